"""Channel names and wildcard patterns.

A channel name is dot-separated segments (``news.sport``, ``chat.lobby.typing``); a
segment is any text without ``.``, ``*`` or whitespace. A pattern may use ``*`` for
exactly one segment (``news.*``, ``chat.*.typing``) and, as its last segment, ``**``
for one or more (``chat.**``).
"""

from __future__ import annotations

import re

__all__ = ["MAX_NAME", "is_pattern", "matches", "valid_channel", "valid_pattern"]

MAX_NAME = 256  # characters in a channel name or pattern
_SEGMENT = re.compile(r"[^.*\s]+")

#: Channel names found valid, so that a channel published to again is not parsed again;
#: bounded (names may be endless: one per user, per document...).
_VALID: set[str] = set()
_VALID_KEPT = 10_000


def valid_channel(name: object) -> bool:
    """A channel one can publish to: segments only, no wildcard."""
    if type(name) is str and name in _VALID:
        return True
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        return False
    for seg in name.split("."):
        if not _SEGMENT.fullmatch(seg):
            return False
    if len(_VALID) >= _VALID_KEPT:
        _VALID.clear()
    _VALID.add(name)
    return True


def valid_pattern(pattern: object) -> bool:
    """A channel name, or a pattern with ``*`` segments and at most a final ``**``."""
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_NAME:
        return False
    segments = pattern.split(".")
    for i, seg in enumerate(segments):
        if seg == "*" or (seg == "**" and i == len(segments) - 1):
            continue
        if not _SEGMENT.fullmatch(seg):
            return False
    return True


def is_pattern(pattern: str) -> bool:
    return "*" in pattern


def matches(pattern: str, channel: str) -> bool:
    """Whether ``channel`` (a name) falls under ``pattern``.

    Example: ``matches("chat.*.typing", "chat.lobby.typing")`` is True.
    """
    want = pattern.split(".")
    have = channel.split(".")
    if want[-1] == "**":
        want.pop()
        if len(have) <= len(want):
            return False
    elif len(have) != len(want):
        return False
    return all(w == "*" or w == h for w, h in zip(want, have, strict=False))
