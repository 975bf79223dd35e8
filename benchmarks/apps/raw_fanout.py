"""Fan-out on bare RSGI, without gobstopper: the baseline the framework is measured against.

Every WebSocket on ``/ws/recv`` joins one room (a list). Each message received on
``/ws/send`` goes to every member: the app starts every send (granian schedules a send
when it is called) and then awaits them all before reading the next message, so at most
one broadcast per sender is in flight.

Run it with ``granian --interface rsgi benchmarks.apps.raw_fanout:app``.
"""

from __future__ import annotations

from typing import Any

from granian.rsgi import ProtocolClosed, ProtocolError  # type: ignore[attr-defined]

__all__ = ["RawFanout", "app"]

_CLOSED = (ProtocolClosed, ProtocolError)
_CLOSE = 0
_TEXT = 2


class RawFanout:
    """A raw RSGI app: one room, one broadcast at a time per sender."""

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

    async def _receiver(self, protocol: Any) -> None:
        transport = await protocol.accept()
        self.room.append(transport)
        try:
            # Keep a receive pending: granian notices a departed client (and answers
            # pings) only while one is.
            while (await transport.receive()).kind != _CLOSE:
                pass
        except _CLOSED:
            pass  # the client left without a close frame
        finally:
            self.room.remove(transport)

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


app = RawFanout()
