"""Graceful shutdown under granian.

On SIGINT/SIGTERM a granian worker stops its sockets at once: open WebSockets end
without a close frame, before the app's shutdown code runs. To close them properly,
gobstopper takes over the worker's signal handlers: on the first signal it runs its
graceful close (flush queues, send close frames, bounded in time), then hands over to
granian's own shutdown. A second signal stops at once.

This relies on granian's worker keeping its shutdown signal in a local named
``shutdown_event`` (granian 2.x); where it cannot be found, nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["take_over_shutdown"]

logger = logging.getLogger("gobstopper")

# A stop signal this soon after the first is the same stop, relayed: not a "force".
_REPEAT_S = 1.0


def _worker_signal() -> Any | None:
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("shutdown_event")
        if type(candidate).__name__ == "WorkerSignal" and hasattr(candidate, "set"):
            return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None


def take_over_shutdown(
    loop: asyncio.AbstractEventLoop,
    graceful: Callable[[], Awaitable[None]],
    forced: Callable[[], None],
) -> bool:
    """Run ``graceful()`` on the first SIGINT/SIGTERM, then let granian stop.

    A repeated signal at least ``_REPEAT_S`` seconds later calls ``forced()`` and stops at
    once; one sooner is ignored, since granian's main process relays a Ctrl-C that the
    worker already received from the terminal. Call it from ``__rsgi_init__`` or from the
    ASGI lifespan start-up. Returns False (and changes nothing) when not running in a
    granian worker process.
    """
    if threading.current_thread() is not threading.main_thread():
        return False  # granian's threaded workers: signals belong to the main thread
    worker_signal = _worker_signal()
    if worker_signal is None:
        return False
    first_at: float | None = None

    def stop_now(_task: object = None) -> None:
        worker_signal.set()

    def on_signal() -> None:
        nonlocal first_at
        now = loop.time()
        if first_at is None:
            first_at = now
            logger.info("stop signal: closing connections gracefully")
            task = loop.create_task(_run(graceful))
            task.add_done_callback(stop_now)
        elif now - first_at >= _REPEAT_S:
            logger.warning("second stop signal: stopping without waiting")
            forced()
            stop_now()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        loop.add_signal_handler(sig, on_signal)
    return True


async def _run(graceful: Callable[[], Awaitable[None]]) -> None:
    try:
        await graceful()
    except Exception:
        logger.exception("graceful close failed; stopping anyway")
