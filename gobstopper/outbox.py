"""Per-connection outbound queue: bounded, ordered, and never awaited by a broadcast.

Sending is credit-based. While a connection has fewer than its transport's window of
started, unfinished sends (64 under RSGI, 1 under ASGI), a broadcast starts the send at
once and does not await it. Past the window, messages wait in a backlog that a task,
started only for that connection and only while it is backlogged, drains in order.
Started sends and the backlog together are limited in messages and bytes; a message that
does not fit triggers the slow-consumer policy. A send blocked for longer than the send
timeout marks the connection slow too.

The fast path (credit left, nothing backlogged, room in the queue) is a count check, a
byte check and the server's send call: finished sends are retired in bulk, from the
front, only once the credit is used up (or when a figure is read), and the totals of
``DeliveryStats`` are counted once per broadcast by ``delivery.deliver``.

Started sends are kept in groups. A transport whose sends on one connection finish in
order, and whose send futures may be dropped unread (granian's log nothing), sets a
``send_group`` above 1: only the future of a group's last send is held, and the group is
known finished, or failed, when that future is. A group ends after ``send_group`` sends,
once it holds ``_GROUP_BYTES``, or when a flush or the drain task must wait for it; the
future of the open group's latest send is kept so that it can be ended at any time.
Holding fewer futures is what keeps the server's send call cheap: the window still
counts every started send, and the send timeout runs on the oldest group's future.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ._util import Throttle
from .config import Config, SlowConsumerPolicy
from .errors import CloseCode
from .transport.base import TransportClosed
from .websocket import WebSocket

__all__ = ["DeliveryStats", "Outbox"]

logger = logging.getLogger("gobstopper.outbox")

#: A group of sends sharing one held future ends once it holds this many bytes, so that
#: a group of big messages takes no longer to finish than about one such message: the
#: send timeout, which waits for a whole group, then judges about one send's progress.
_GROUP_BYTES = 64 * 1024


def _nothing_held() -> Iterable[int]:
    return ()


class DeliveryStats:
    """Totals shared by every outbox of a manager.

    Attributes:
        dropped: messages dropped by the slow-consumer policy.
        slow_closed: connections closed as slow consumers.
        queued, queued_bytes: messages (and bytes) accepted for managed connections.
    """

    __slots__ = (
        "_held",
        "_peak",
        "backlogged",
        "backlogged_bytes",
        "discarded",
        "discarded_bytes",
        "dropped",
        "queued",
        "queued_bytes",
        "slow_closed",
    )

    def __init__(self, held: Callable[[], Iterable[int]] = _nothing_held) -> None:
        self.dropped = 0
        self.slow_closed = 0
        self.queued = 0
        self.queued_bytes = 0
        #: In backlogs now (accepted, not yet handed to the server).
        self.backlogged = 0
        self.backlogged_bytes = 0
        #: Left a backlog without being sent (dropped, or their connection closed).
        self.discarded = 0
        self.discarded_bytes = 0
        self._peak = 0
        # What each live outbox holds now: the peak is the most of these and of what
        # outboxes held before they retired sends or closed.
        self._held = held

    @property
    def sent(self) -> int:
        """Messages handed to the server for managed connections."""
        return self.queued - self.backlogged - self.discarded

    @property
    def sent_bytes(self) -> int:
        """The bytes of ``sent``."""
        return self.queued_bytes - self.backlogged_bytes - self.discarded_bytes

    @property
    def peak_queued_bytes(self) -> int:
        """The most bytes any one connection has had queued (a check on the bound)."""
        return max(self._peak, max(self._held(), default=0))

    def note_held(self, held: int) -> None:
        """An outbox held ``held`` bytes just before holding fewer."""
        if held > self._peak:
            self._peak = held


def _failure(fut: Any) -> BaseException | None:
    """The exception of a finished send (None if it succeeded or was cancelled), read so
    that it is never reported as unretrieved."""
    try:
        exc: BaseException | None = fut.exception()
    except asyncio.CancelledError:
        return None
    return exc


def _closed_sender(data: object) -> object:
    raise TransportClosed(CloseCode.NORMAL_CLOSURE)


class Outbox:
    """The outbound queue of one managed connection."""

    __slots__ = (
        "_backlog",
        "_bytes",
        "_closed",
        "_credit",
        "_drainer",
        "_flushing",
        "_group",
        "_held",
        "_held_bytes",
        "_held_counts",
        "_last",
        "_limit",
        "_max_bytes",
        "_max_messages",
        "_on_slow",
        "_open",
        "_open_bytes",
        "_policy",
        "_sealed",
        "_send_bytes",
        "_send_errors",
        "_send_text",
        "_send_timeout",
        "_stats",
        "_throttle",
        "_unfinished",
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
        #: Sends that may be started with nothing backlogged: the window, within the
        #: message bound.
        self._limit = min(self._window, self._max_messages)
        #: ``_limit`` while the fast path is open; 0 once backlogged, sealed or closed.
        self._credit = self._limit
        self._policy = config.slow_consumer_policy
        self._send_timeout = config.send_timeout
        #: Sends started and not known finished (the window bounds them).
        self._unfinished = 0
        #: One send in ``_group`` has its future held: the last of its group.
        self._group = max(1, min(ws.send_group, self._window))
        #: The futures of ended groups, oldest first, with their sends and bytes.
        self._held: deque[Any] = deque()
        self._held_counts: deque[int] = deque()
        self._held_bytes: deque[int] = deque()
        #: The open group: its sends, its bytes, its latest send's future.
        self._open = 0
        self._open_bytes = 0
        self._last: Any = None
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
        #: Messages dropped by the slow-consumer policy.
        self.dropped = 0

    @property
    def websocket(self) -> WebSocket:
        return self._ws

    def settle(self) -> None:
        """Retire the sends that have finished, so that the counts are current."""
        if not self._closed:
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
        return self._unfinished + len(self._backlog)

    @property
    def held_bytes(self) -> int:
        """``queued_bytes`` without retiring finished sends first: what is held now."""
        return self._bytes

    def seal(self) -> None:
        """Queue nothing more (``put`` says False); what is queued still goes, and
        ``flush`` waits for it. For a connection being closed that must get no more
        pushes than the last one queued."""
        self._sealed = True
        self._credit = 0

    def put(self, data: str | bytes, size: int) -> bool:
        """Queue one message (``size`` bytes); never blocks. Returns False if it was not
        queued (a full queue, a closed or sealed one)."""
        if self.offer(data, size):
            stats = self._stats
            stats.queued += 1
            stats.queued_bytes += size
            return True
        return False

    def offer(self, data: str | bytes, size: int) -> bool:
        """``put``, leaving the manager's totals (``DeliveryStats.queued``) to the caller,
        which counts a whole broadcast at once."""
        # The fast path, taken by every connection that keeps up: credit left (nothing
        # backlogged, not sealed or closed), room in the queue.
        unfinished = self._unfinished
        if unfinished < self._credit:
            queued = self._bytes + size
            if queued <= self._max_bytes:
                try:
                    fut = (self._send_text if type(data) is str else self._send_bytes)(data)  # type: ignore[arg-type]
                except self._send_errors as exc:
                    self._broken(exc)
                    return False
                self._unfinished = unfinished + 1
                self._bytes = queued
                count = self._open + 1
                group_bytes = self._open_bytes + size
                if count < self._group and group_bytes < _GROUP_BYTES:
                    self._open = count
                    self._open_bytes = group_bytes
                    self._last = fut
                else:
                    self._held.append(fut)
                    self._held_counts.append(count)
                    self._held_bytes.append(group_bytes)
                    self._open = self._open_bytes = 0
                    self._last = None
                return True
        return self._put_slowly(data, size)

    def _put_slowly(self, data: str | bytes, size: int) -> bool:
        if self._closed or self._sealed:
            return False
        self._retire()
        if self._closed:
            return False
        backlog = self._backlog
        full = self._unfinished + len(backlog) >= self._max_messages
        if full or self._bytes + size > self._max_bytes:
            return self._overflow(data, size)
        self._bytes += size
        if not backlog and self._unfinished < self._window:
            return self._send_now(data, size)
        self._hold(data, size)
        return True

    def _hold(self, data: str | bytes, size: int) -> None:
        """Put a message in the backlog (its bytes are counted already)."""
        self._backlog.append((data, size))
        self._credit = 0
        stats = self._stats
        stats.backlogged += 1
        stats.backlogged_bytes += size
        self._ensure_drainer()

    def _send_now(self, data: str | bytes, size: int) -> bool:
        try:
            fut = (self._send_text if type(data) is str else self._send_bytes)(data)  # type: ignore[arg-type]
        except self._send_errors as exc:
            self._broken(exc)
            return False
        self._unfinished += 1
        count = self._open + 1
        group_bytes = self._open_bytes + size
        if count < self._group and group_bytes < _GROUP_BYTES:
            self._open = count
            self._open_bytes = group_bytes
            self._last = fut
        else:
            self._end_group(fut, count, group_bytes)
        return True

    def _end_group(self, fut: Any, count: int, group_bytes: int) -> None:
        """Hold ``fut``, the future of the last of ``count`` sends (``group_bytes``)."""
        self._held.append(fut)
        self._held_counts.append(count)
        self._held_bytes.append(group_bytes)
        self._open = self._open_bytes = 0
        self._last = None

    def _end_open_group(self) -> None:
        """End the open group now, so that its latest send's future can be waited for."""
        if self._open:
            self._end_group(self._last, self._open, self._open_bytes)

    def _retire(self) -> None:
        """Retire the finished groups at the front, all at once; a failed one means the
        client is gone. Every held outcome is read, so that none goes unretrieved."""
        held = self._held
        if held:
            if not held[0].done():
                return
        elif not self._open or not self._last.done():
            return
        self._stats.note_held(self._bytes)
        counts = self._held_counts
        sizes = self._held_bytes
        finished = freed = 0
        failed: BaseException | None = None
        while held and held[0].done():
            fut = held.popleft()
            finished += counts.popleft()
            freed += sizes.popleft()
            exc = _failure(fut)
            if failed is None:
                failed = exc
        # Sends finish in order: the open group's latest send done means all of it is.
        if not held and self._open and self._last.done():
            finished += self._open
            freed += self._open_bytes
            exc = _failure(self._last)
            if failed is None:
                failed = exc
            self._open = self._open_bytes = 0
            self._last = None
        self._unfinished -= finished
        self._bytes -= freed
        if failed is not None:
            self._broken(failed)

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
            dropped = freed = 0
            while backlog and (
                self._unfinished + len(backlog) >= self._max_messages
                or self._bytes - freed + size > self._max_bytes
            ):
                _, old_size = backlog.popleft()
                freed += old_size
                dropped += 1
            self._unsent(dropped, freed)
            if (
                self._unfinished + len(backlog) < self._max_messages
                and self._bytes + size <= self._max_bytes
            ):
                self._count_drops(dropped)
                self._bytes += size
                self._hold(data, size)
                return True
            # Everything queued is already being sent: the new message is the one to go.
            self._count_drops(dropped + 1)
            if not backlog:
                self._reopen()
            return False
        self._count_drops(1)
        return False

    def _unsent(self, n: int, size: int) -> None:
        """``n`` backlogged messages (``size`` bytes) leave the backlog unsent."""
        if n:
            self._stats.note_held(self._bytes)
            self._bytes -= size
            stats = self._stats
            stats.backlogged -= n
            stats.backlogged_bytes -= size
            stats.discarded += n
            stats.discarded_bytes += size

    def _reopen(self) -> None:
        """The backlog is empty: broadcasts may start sends directly again."""
        if not self._closed and not self._sealed:
            self._credit = self._limit

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
        # them. A flush asks this task to wait for the started sends too.
        held = self._held
        backlog = self._backlog
        stats = self._stats
        try:
            while not self._closed and (backlog or (self._flushing and self._unfinished)):
                self._retire()
                if self._closed:
                    return
                if backlog and self._unfinished < self._window:
                    data, size = backlog.popleft()
                    stats.backlogged -= 1
                    stats.backlogged_bytes -= size
                    if not backlog:
                        self._reopen()
                    if not self._send_now(data, size):
                        stats.discarded += 1
                        stats.discarded_bytes += size
                    continue
                if not self._unfinished:
                    continue
                if not held:
                    self._end_open_group()
                # The oldest unfinished send is in the oldest group: a group that does not
                # finish within the timeout holds a blocked send.
                done, _ = await asyncio.wait((held[0],), timeout=self._send_timeout)
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
            while not self._closed and (self._backlog or self._unfinished):
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
        self._credit = 0
        if self._drainer is not None:
            self._drainer.cancel()
        self._end_open_group()
        held = self._held
        while held:
            fut = held.popleft()
            if not fut.done():
                fut.cancel()
            else:
                _failure(fut)  # retrieved, so that no "never retrieved" warning follows
        self._held_counts.clear()
        self._held_bytes.clear()
        self._unfinished = 0
        self._unsent(len(self._backlog), sum(size for _, size in self._backlog))
        self._backlog.clear()
        self._stats.note_held(self._bytes)
        # Hold nothing of the server's: a lingering Connection must not keep its socket.
        self._send_text = self._send_bytes = _closed_sender
        self._bytes = 0
