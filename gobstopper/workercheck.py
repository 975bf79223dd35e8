"""Warn when granian runs several workers without ``--respawn-failed-workers``.

Without that flag, granian stops the whole server (every worker) when one worker dies
(a crash, the kernel's OOM killer, ``kill -9``); with it, the others keep serving and
granian starts a replacement. A worker cannot ask granian how it was configured, but
it can read the same things granian read: its command line (``sys.argv``, which a
worker shares with granian's main process, forked or spawned) and the ``GRANIAN_*``
environment variables. They are parsed with granian's own command-line parser, so
``--workers=2``, ``GRANIAN_WORKERS=2`` and ``--no-respawn-failed-workers`` mean what
they mean to granian.

What is detected: the ``granian`` program or ``python -m granian``. Not detected (no
warning): granian embedded from Python (``Granian(...).serve()``), other servers, a
command line that does not parse.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["FLAG", "unguarded_workers", "warn_without_respawn"]

logger = logging.getLogger("gobstopper")

#: granian's option that replaces a dead worker instead of stopping the server.
FLAG = "--respawn-failed-workers"

# Whether this process has warned already: one warning per worker, however many apps.
_warned = False


def _is_granian(program: str) -> bool:
    path = program.replace("\\", "/")
    name = path.rsplit("/", 1)[-1]
    return name in ("granian", "granian.exe") or path.endswith("granian/__main__.py")


def _granian_options(argv: Sequence[str]) -> dict[str, Any] | None:
    """granian's options as ``argv`` and the ``GRANIAN_*`` variables set them, or None."""
    if not argv or not _is_granian(argv[0]):
        return None
    try:
        import click
        from granian.cli import cli
    except ImportError:  # granian not installed: not granian's command line then
        return None
    try:
        # resilient_parsing: no eager option (--help, --version) runs and exits.
        ctx = cli.make_context(
            "granian", list(argv[1:]), auto_envvar_prefix="GRANIAN", resilient_parsing=True
        )
    except click.ClickException:
        return None
    return dict(ctx.params)


def unguarded_workers(argv: Sequence[str] | None = None) -> int:
    """How many workers granian runs without ``--respawn-failed-workers``.

    Args:
        argv: the command line (default ``sys.argv``); the ``GRANIAN_*`` variables are
            read from ``os.environ``, as granian reads them.

    Returns:
        The number of workers when it is more than one and the flag is off; else 0 (one
        worker, the flag on, or not granian's command line).
    """
    options = _granian_options(sys.argv if argv is None else argv)
    if options is None:
        return 0
    workers = options.get("workers") or 1
    if workers > 1 and not options.get("respawn_failed_workers"):
        return int(workers)
    return 0


def warn_without_respawn(argv: Sequence[str] | None = None) -> bool:
    """Log a warning naming ``--respawn-failed-workers`` when granian runs several
    workers without it. From ``sys.argv`` (the default), once per process.

    Returns:
        Whether it warned now.
    """
    global _warned
    if argv is None and _warned:
        return False
    workers = unguarded_workers(argv)
    if not workers:
        return False
    if argv is None:
        _warned = True
    logger.warning(
        "granian runs %d workers without %s: if one worker dies, granian stops every "
        "worker and exits. Add %s to keep the others serving and replace the dead one "
        "(docs/deployment.md).",
        workers,
        FLAG,
        FLAG,
    )
    return True
