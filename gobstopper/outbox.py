"""Per-connection outbound queue: bounded, ordered, and never awaited by a broadcast.

Sending is credit-based. While a connection has fewer than its transport's window of
started, unfinished sends (64 under RSGI, 1 under ASGI), a broadcast starts the send at
once and does not await it. Past the window, messages wait in a backlog that a task,
started only for that connection and only while it is backlogged, drains in order.
Started sends and the backlog together are limited in messages and bytes; a message that
does not fit triggers the slow-consumer policy. A send blocked for longer than the send
timeout marks the connection slow too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._util import Throttle
from .config import Config, SlowConsumerPolicy
from .errors import CloseCode
from .transport.base import TransportClosed
from .websocket import WebSocket

__all__ = ["DeliveryStats", "Outbox"]

logger = logging.getLogger("gobstopper.outbox")


@dataclass(slots=True)
class DeliveryStats:
    """Totals shared by every outbox of a manager."""

    dropped: int = 0
    slow_closed: int = 0
    #: Messages (and their bytes) handed to the server for managed connections.
    sent: int = 0
    sent_bytes: int = 0
    #: The most bytes any one connection has had queued (a check on the bound).
    peak_queued_bytes: int = 0


def _closed_sender(data: object) -> object:
    raise TransportClosed(CloseCode.NORMAL_CLOSURE)


class Outbox:
    """The outbound queue of one managed connection."""

    __slots__ = (
        "_backlog",
        "_bytes",
        "_closed",
        "_drainer",
        "_flushing",
        "_inflight",
        "_inflight_sizes",
        "_max_bytes",
        "_max_messages",
        "_messages",
        "_on_slow",
        "_policy",
        "_sealed",
        "_send_bytes",
        "_send_errors",
        "_send_text",
        "_send_timeout",
        "_stats",
        "_throttle",
        "_window",
        "_ws",
        "dropped",
    )

    def __init__(
        self,
        ws: WebSocket,
        config: Config,
        on_slow: Callable[[Outbox, str], None],
        stats: DeliveryStats,
        throttle: Throttle,
    ) -> None:
        self._ws = ws
        self._send_text, self._send_bytes, self._send_errors = ws.senders()
        self._window = ws.send_window
        self._max_messages = config.send_queue_messages
        self._max_bytes = config.send_queue_bytes
        self._policy = config.slow_consumer_policy
        self._send_timeout = config.send_timeout
        self._inflight: deque[Any] = deque()
        self._inflight_sizes: deque[int] = deque()
        self._backlog: deque[tuple[str | bytes, int]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._flushing = 0
        self._closed = False
        self._sealed = False
        self._on_slow = on_slow
        self._stats = stats
        self._throttle = throttle
        # Accepted for this connection and not known to be sent (finished sends are
        # retired lazily: read them through queued_bytes / queued_messages).
        self._bytes = 0
        self._messages = 0
        #: Messages dropped by the slow-consumer policy.
        self.dropped = 0

    @property
    def websocket(self) -> WebSocket:
        return self._ws

    def settle(self) -> None:
        """Retire the sends that have finished, so that the counts are current."""
        inflight = self._inflight
        while inflight and inflight[0].done() and not self._closed:
            self._retire()

    @property
    def queued_bytes(self) -> int:
        """Bytes accepted for this connection and not yet sent."""
        self.settle()
        return self._bytes

    @property
    def queued_messages(self) -> int:
        """Messages accepted for this connection and not yet sent."""
        self.settle()
        return self._messages

    def seal(self) -> None:
        """Queue nothing more (``put`` says False); what is queued still goes, and
        ``flush`` waits for it. For a connection being closed that must get no more
        pushes than the last one queued."""
        self._sealed = True

    def put(self, data: str | bytes, size: int) -> bool:
        """Queue one message (``size`` bytes); never blocks. Returns False if it was not
        queued (a full queue, a closed or sealed one)."""
        if self._closed or self._sealed:
            return False
        inflight = self._inflight
        # The fast path, taken by every connection that keeps up: credit left, nothing
        # backlogged, room in the queue. Finished sends are retired later, in batches.
        if len(inflight) < self._window and not self._backlog:
            queued = self._bytes + size
            if self._messages < self._max_messages and queued <= self._max_bytes:
                try:
                    fut = (self._send_text if type(data) is str else self._send_bytes)(data)  # type: ignore[arg-type]
                except self._send_errors as exc:
                    self._broken(exc)
                    return False
                inflight.append(fut)
                self._inflight_sizes.append(size)
                self._messages += 1
                self._bytes = queued
                stats = self._stats
                stats.sent += 1
                stats.sent_bytes += size
                if queued > self._stats.peak_queued_bytes:
                    self._stats.peak_queued_bytes = queued
                return True
        while inflight and inflight[0].done():
            self._retire()
            if self._closed:
                return False
        if self._messages >= self._max_messages or self._bytes + size > self._max_bytes:
            return self._overflow(data, size)
        self._messages += 1
        self._bytes += size
        if self._bytes > self._stats.peak_queued_bytes:
            self._stats.peak_queued_bytes = self._bytes
        if not self._backlog and len(inflight) < self._window:
            return self._send_now(data, size)
        else:
            self._backlog.append((data, size))
            self._ensure_drainer()
        return True

    def _send_now(self, data: str | bytes, size: int) -> bool:
        try:
            fut = (self._send_text if type(data) is str else self._send_bytes)(data)  # type: ignore[arg-type]
        except self._send_errors as exc:
            self._broken(exc)
            return False
        self._inflight.append(fut)
        self._inflight_sizes.append(size)
        self._stats.sent += 1
        self._stats.sent_bytes += size
        return True

    def _retire(self) -> None:
        fut = self._inflight.popleft()
        self._bytes -= self._inflight_sizes.popleft()
        self._messages -= 1
        if not fut.cancelled():
            exc = fut.exception()
            if exc is not None:
                self._broken(exc)

    def _broken(self, exc: BaseException) -> None:
        """A send failed: the client is gone."""
        logger.debug("send to %s failed: %r", self._ws.path, exc)
        code = exc.code if isinstance(exc, TransportClosed) else CloseCode.ABNORMAL_CLOSURE
        self._ws.mark_broken(code)  # runs the manager's close callback, which closes us

    def _overflow(self, data: str | bytes, size: int) -> bool:
        policy = self._policy
        if policy is SlowConsumerPolicy.CLOSE:
            self._on_slow(self, "outbound queue full")
            return False
        if policy is SlowConsumerPolicy.DROP_OLDEST:
            backlog = self._backlog
            dropped = 0
            while backlog and (
                self._messages >= self._max_messages or self._bytes + size > self._max_bytes
            ):
                _, old_size = backlog.popleft()
                self._messages -= 1
                self._bytes -= old_size
                dropped += 1
            if self._messages < self._max_messages and self._bytes + size <= self._max_bytes:
                self._count_drops(dropped)
                self._messages += 1
                self._bytes += size
                backlog.append((data, size))
                self._ensure_drainer()
                return True
            # Everything queued is already being sent: the new message is the one to go.
            self._count_drops(dropped + 1)
            return False
        self._count_drops(1)
        return False

    def _count_drops(self, n: int) -> None:
        if n:
            self.dropped += n
            self._stats.dropped += n
            self._throttle.warning(
                "slow consumer %s: dropped %d message(s) (%s), %d in all",
                self._ws.path,
                n,
                self._policy.value,
                self.dropped,
            )

    def _ensure_drainer(self) -> None:
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # The only code that waits on started sends: granian's futures keep a single
        # done-callback (a second one replaces the first), so nothing else may wait on
        # them. A flush asks this task to wait for the in-flight sends too.
        inflight = self._inflight
        try:
            while not self._closed and (self._backlog or (self._flushing and inflight)):
                while inflight and inflight[0].done():
                    self._retire()
                    if self._closed:
                        return
                if self._backlog and len(inflight) < self._window:
                    data, size = self._backlog.popleft()
                    self._send_now(data, size)
                    continue
                if not inflight:
                    continue
                done, _ = await asyncio.wait((inflight[0],), timeout=self._send_timeout)
                if not done and not self._closed:
                    self._on_slow(self, f"a send blocked for over {self._send_timeout:g}s")
                    return
        finally:
            self._drainer = None

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued has been sent, at most ``timeout`` seconds.

        Returns True when the queue is empty, False on timeout or if the connection closed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._flushing += 1
        try:
            while not self._closed and (self._backlog or self._inflight):
                self._ensure_drainer()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                assert self._drainer is not None
                await asyncio.wait((self._drainer,), timeout=remaining)
        finally:
            self._flushing -= 1
        return not self._closed

    def close(self) -> None:
        """Stop sending and free the queue (the connection is gone or being closed)."""
        if self._closed:
            return
        self._closed = True
        if self._drainer is not None:
            self._drainer.cancel()
        while self._inflight:
            fut = self._inflight.popleft()
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # retrieved, so that no "never retrieved" warning follows
        self._inflight_sizes.clear()
        self._backlog.clear()
        # Hold nothing of the server's: a lingering Connection must not keep its socket.
        self._send_text = self._send_bytes = _closed_sender
        self._bytes = 0
        self._messages = 0
