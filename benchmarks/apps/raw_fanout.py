"""Fan-out on bare RSGI, without gobstopper: the baselines the framework is measured against.

Every WebSocket on ``/ws/recv`` joins one room. Each message received on ``/ws/send``
goes to every member; granian schedules a send when it is called, and the three apps
differ only in what they do with the future it returns:

- ``app`` (*start then await*): starts every member's send, then awaits them all before
  reading the next message, so at most one broadcast per sender is in flight.
- ``never_app`` (*never awaited*): starts every member's send and never awaits it. The
  most any RSGI code can do, and unbounded: a client that stops reading makes the
  server hold every message sent to it. It keeps the futures, dropping the finished
  ones now and then, so that each one is looked at once it is done.
- ``credit_app`` (*credit window*): the bounded design. The broadcast starts a member's
  send at once while that member has fewer than ``CREDIT`` unfinished sends (finished
  ones are popped from the front once the window looks full); otherwise the message
  joins the member's backlog, which a task started only for that backlogged member
  drains in order. A backlog that would pass ``BACKLOG_MESSAGES`` or ``BACKLOG_BYTES``
  closes the member as slow. No task and no queue per connection on the fast path.

Run them with ``granian --interface rsgi benchmarks.apps.raw_fanout:app`` (or
``:never_app``, ``:credit_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from granian.rsgi import ProtocolClosed, ProtocolError  # type: ignore[attr-defined]

__all__ = ["CREDIT", "CreditWindow", "NeverAwaited", "RawFanout", "app", "credit_app", "never_app"]

_CLOSED = (ProtocolClosed, ProtocolError)
_CLOSE = 0
_TEXT = 2

#: Unfinished sends a member may have before its messages wait in a backlog.
CREDIT = 64
#: A member's backlog beyond its window: with the window, 1,024 messages (gobstopper's
#: default bound per connection), and at most 1 MiB.
BACKLOG_MESSAGES = 1024 - CREDIT
BACKLOG_BYTES = 1 << 20
#: The never-awaited app looks at its futures once it holds this many (or twice as many
#: as were still unfinished at the last look).
SWEEP = 1 << 16


class RawFanout:
    """Start every member's send, then await them all: one broadcast at a time per sender."""

    def __init__(self) -> None:
        self.room: list[Any] = []

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "ws":
            protocol.response_str(404, [("content-type", "text/plain")], "Not Found")
            return
        if scope.path == "/ws/recv":
            await self._receiver(protocol)
        elif scope.path == "/ws/send":
            await self._sender(protocol)
        else:
            protocol.close(404)

    def _join(self, protocol: Any, transport: Any) -> Any:
        self.room.append(transport)
        return transport

    def _leave(self, member: Any) -> None:
        self.room.remove(member)

    async def _receiver(self, protocol: Any) -> None:
        transport = await protocol.accept()
        member = self._join(protocol, transport)
        try:
            # Keep a receive pending: granian notices a departed client (and answers
            # pings) only while one is.
            while (await transport.receive()).kind != _CLOSE:
                pass
        except _CLOSED:
            pass  # the client left without a close frame
        finally:
            self._leave(member)

    async def _sender(self, protocol: Any) -> None:
        transport = await protocol.accept()
        try:
            while True:
                message = await transport.receive()
                if message.kind == _CLOSE:
                    return
                await self._broadcast(message.kind, message.data)
        except _CLOSED:
            pass

    async def _broadcast(self, kind: int, data: Any) -> None:
        started = []
        # A list comprehension would stop at the first member that has gone away.
        for member in tuple(self.room):
            try:
                started.append(member.send_str(data) if kind == _TEXT else member.send_bytes(data))
            except _CLOSED:
                continue  # it is leaving; its receiver removes it from the room
        for send in started:
            try:
                await send
            except _CLOSED:
                continue


class NeverAwaited(RawFanout):
    """Start every member's send and never await it (unbounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Any] = []
        self.sweep_at = SWEEP

    async def _broadcast(self, kind: int, data: Any) -> None:
        pending = self.pending
        # Nothing here awaits: the room cannot change during the loop.
        for member in self.room:
            try:
                pending.append(member.send_str(data) if kind == _TEXT else member.send_bytes(data))
            except _CLOSED:
                continue
        if len(pending) >= self.sweep_at:
            self._sweep()

    def _sweep(self) -> None:
        # A failed send only means its member is leaving (its receiver sees it): looking
        # at the error once is all it needs. granian's futures log nothing when dropped.
        unfinished = []
        for send in self.pending:
            if not send.done():
                unfinished.append(send)
            elif not send.cancelled():
                send.exception()
        self.pending = unfinished
        self.sweep_at = max(SWEEP, 2 * len(unfinished))


class Member:
    """A room member of the credit-window app."""

    __slots__ = ("backlog", "backlog_bytes", "inflight", "protocol", "send", "transport")

    def __init__(self, protocol: Any, transport: Any) -> None:
        self.protocol = protocol
        self.transport = transport
        self.send = transport.send_str
        self.inflight: deque[Any] = deque()  # started sends, oldest first
        self.backlog: deque[Any] | None = None  # set while a task drains it
        self.backlog_bytes = 0


class CreditWindow(RawFanout):
    """Start a member's send at once while it has credit; else its bounded backlog."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[Member, None] = {}
        self.drainers: set[asyncio.Task[None]] = set()

    def _join(self, protocol: Any, transport: Any) -> Member:
        member = Member(protocol, transport)
        self.members[member] = None
        return member

    def _leave(self, member: Member) -> None:
        self.members.pop(member, None)
        member.backlog = None

    async def _broadcast(self, kind: int, data: Any) -> None:
        if kind != _TEXT:
            return  # the benchmark sends text only
        slow = []
        for member in self.members:
            if member.backlog is None:
                inflight = member.inflight
                if len(inflight) >= CREDIT:
                    while inflight and inflight[0].done():
                        inflight.popleft()
                if len(inflight) < CREDIT:
                    try:  # noqa: SIM105 (a try costs nothing here; suppress() does)
                        inflight.append(member.send(data))
                    except _CLOSED:
                        pass  # it is leaving; its receiver takes it out of the room
                    continue
                member.backlog = deque()
                task = asyncio.create_task(self._drain(member))
                self.drainers.add(task)
                task.add_done_callback(self.drainers.discard)
            backlog = member.backlog
            size = len(data)
            if len(backlog) >= BACKLOG_MESSAGES or member.backlog_bytes + size > BACKLOG_BYTES:
                slow.append(member)
                continue
            backlog.append(data)
            member.backlog_bytes += size
        for member in slow:
            self._leave(member)
            with contextlib.suppress(*_CLOSED):
                member.protocol.close(1013)  # the client sees 1005 under RSGI

    async def _drain(self, member: Member) -> None:
        """Send ``member``'s backlog in order as its window frees; then back to the fast path."""
        inflight = member.inflight
        try:
            while member.backlog:
                backlog = member.backlog
                while len(inflight) >= CREDIT:
                    await inflight[0]
                    inflight.popleft()
                    while inflight and inflight[0].done():
                        inflight.popleft()
                while backlog and len(inflight) < CREDIT:
                    data = backlog.popleft()
                    member.backlog_bytes -= len(data)
                    inflight.append(member.send(data))
        except _CLOSED:
            pass  # it is leaving; its receiver takes it out of the room
        finally:
            member.backlog = None
            member.backlog_bytes = 0


app = RawFanout()
never_app = NeverAwaited()
credit_app = CreditWindow()
