"""Plumbing shared by every layer: one log throttle, one backoff, one background-task set.

Each exists once so that the server, the brokers and the client behave alike: the same
"N similar events not logged" wording, the same jittered doubling of reconnection
delays, the same rule that a background task's failure is logged, never lost.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["Backoff", "TaskSet", "Throttle", "lazy_exports"]


class Throttle:
    """Logs at most once per ``interval`` seconds, saying how many lines it held back.

    Example: ``Throttle(logger).warning("dropped %d", n)`` in a loop logs once per 10 s.
    """

    __slots__ = ("_held", "_interval", "_last", "_logger")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last = float("-inf")
        self._held = 0

    def log(
        self, level: int, msg: str, *args: object, extra: dict[str, object] | None = None
    ) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._held += 1
            return
        if self._held:
            msg += " (%d similar events in the last %.0fs not logged)"
            args = (*args, self._held, self._interval)
        self._last, self._held = now, 0
        self._logger.log(level, msg, *args, extra=extra)

    def warning(self, msg: str, *args: object, extra: dict[str, object] | None = None) -> None:
        self.log(logging.WARNING, msg, *args, extra=extra)

    def error(self, msg: str, *args: object, extra: dict[str, object] | None = None) -> None:
        self.log(logging.ERROR, msg, *args, extra=extra)


class Backoff:
    """Reconnection delays: ``first`` seconds, doubling up to ``maximum``, each drawn
    from [0.5, 1] of its nominal value so that many peers cut off at once do not come
    back in step.

    Examples:
        ```python
        backoff = Backoff(0.1, 5.0)
        while not connected:
            await backoff.wait()
        backoff.reset()
        ```
    """

    __slots__ = ("_delay", "first", "maximum")

    def __init__(self, first: float, maximum: float) -> None:
        if first <= 0 or maximum < first:
            raise ValueError(f"backoff needs 0 < first <= maximum, got {first}, {maximum}")
        self.first = first
        self.maximum = maximum
        self._delay = first

    def next(self) -> float:
        """The next delay, jittered; the one after it is twice as long (up to the cap)."""
        delay = self._delay * random.uniform(0.5, 1.0)
        self._delay = min(self._delay * 2, self.maximum)
        return delay

    async def wait(self) -> None:
        await asyncio.sleep(self.next())

    def reset(self) -> None:
        """Back to the first delay (after a success)."""
        self._delay = self.first


class TaskSet:
    """Background tasks kept alive until they finish; a failure is logged, not lost.

    Args:
        logger: where failures go.
        what: how a failure is described (``"broker operation"``).
        throttle: log failures through it (a flood of them is one line per interval).
    """

    __slots__ = ("_logger", "_tasks", "_throttle", "_what")

    def __init__(
        self, logger: logging.Logger, what: str = "background task", throttle: bool = False
    ) -> None:
        self._logger = logger
        self._what = what
        self._throttle = Throttle(logger) if throttle else None
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``coro`` in the background and return its task."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if self._throttle is not None:
            self._throttle.warning("%s failed: %r", self._what, exc)
        else:
            self._logger.error("%s failed", self._what, exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    async def wait(self) -> None:
        """Wait for every task running now (their failures are logged, not raised)."""
        if self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task and wait until they have stopped (``cancel_and_wait``)."""
        await cancel_and_wait(tuple(self._tasks))


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], again_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has stopped.

    A task may swallow its cancellation: before Python 3.12, ``asyncio.wait_for`` returns
    the result of what it awaits when that completes just as the cancellation arrives,
    and a loop then goes on. So what still runs after ``again_s`` is cancelled again.
    """
    tasks = list(tasks)
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_s)
    for task in tasks:  # their failures are the caller's no more (as gather's would be)
        if not task.cancelled():
            task.exception()


def lazy_exports(
    package: str, namespace: dict[str, Any], sources: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` importing each public name on first use
    from the module ``sources`` names (relative to ``package``), so that importing one
    light module of the package does not load the heavy ones.

    Example: ``__getattr__, __dir__ = lazy_exports(__name__, globals(), {"App": ".app"})``
    """

    def getattr_(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source, package), name)
        namespace[name] = value  # found once: later look-ups do not come here
        return value

    def dir_() -> list[str]:
        public = namespace.get("__all__", ())
        return sorted({*public, *(name for name in namespace if name.startswith("__"))})

    return getattr_, dir_
