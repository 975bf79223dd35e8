"""Environment variables that look like settings but are none: a misspelt name would
otherwise leave the default in force without a word.

The names checked are derived from the settings' own: a variable is looked at when it
starts like one of them (``GOBSTOPPER_``, ``WS_``, ``MAX_WS_``...). ``GOBSTOPPER_``
is the project's own: any unknown name there is reported. The other prefixes are
shared with other programs (``HTTP_PROXY``), so a name there is reported only when it
is close to a setting's (``MAX_WS_MESSAGE_BYTE`` for ``MAX_WS_MESSAGE_BYTES``).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping

from .settings import SETTINGS

__all__ = ["PREFIXES", "unknown_variables", "warn_unknown_variables"]

logger = logging.getLogger("gobstopper")

# Words that start a name without making it ours: the prefix takes the next word too.
_GENERIC = frozenset({"MAX", "MIN"})
# The prefix that is the project's name: every variable under it is meant for us.
_OWN = "GOBSTOPPER_"
# How close (difflib's ratio) a name under a shared prefix must be to a setting's name to
# count as a misspelling of it; 0.8 takes a missing or extra letter or word ending, and
# leaves alone e.g. HTTP_PROXY and HTTP_PORT.
_CLOSE = 0.8
# How close the suggestion for an unknown GOBSTOPPER_ name must be to be worth showing.
_SUGGEST = 0.72

_KNOWN = frozenset(s.env for s in SETTINGS.values())


def _prefix(name: str) -> str:
    words = name.split("_")
    return "_".join(words[: 2 if words[0] in _GENERIC else 1]) + "_"


#: The prefixes of the settings' variables, e.g. ``GOBSTOPPER_``, ``MAX_WS_``, ``WS_``.
PREFIXES: tuple[str, ...] = tuple(sorted({_prefix(env) for env in _KNOWN}))

# The variables already reported from os.environ: each is reported once per process,
# however many apps read it.
_reported: set[str] = set()


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The variables of ``environ`` that look like settings but match none.

    Returns:
        ``(name, closest setting's variable or None)`` pairs, sorted by name.
    """
    found: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        upper = name.upper()
        if name in _KNOWN or not upper.startswith(PREFIXES):
            continue
        if upper in _KNOWN:  # the right name in the wrong case
            found.append((name, upper))
            continue
        owned = upper.startswith(_OWN)
        close = difflib.get_close_matches(upper, _KNOWN, 1, _SUGGEST if owned else _CLOSE)
        if owned or close:
            found.append((name, close[0] if close else None))
    return found


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log one warning naming the variables that look like settings but match none,
    each with the closest setting. From ``os.environ`` (the default), a variable is
    reported once per process.

    Returns:
        The names reported now.
    """
    from_process = environ is None
    found = unknown_variables(os.environ if environ is None else environ)
    if from_process:
        found = [(name, close) for name, close in found if name not in _reported]
        _reported.update(name for name, _ in found)
    if found:
        listed = "; ".join(
            f"{name} (did you mean {close}?)" if close else f"{name} (no setting is close)"
            for name, close in found
        )
        logger.warning(
            "environment variable(s) that match no setting, ignored: %s. "
            "See docs/configuration.md for the settings' names.",
            listed,
        )
    return [name for name, _ in found]
