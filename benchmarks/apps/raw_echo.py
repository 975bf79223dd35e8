"""Echo on bare RSGI, without gobstopper: the baseline of the echo benchmark.

Each message received on ``/ws/echo`` is sent back as it came, text as text and binary
as binary, one at a time.

Run it with ``granian --interface rsgi benchmarks.apps.raw_echo:app``.
"""

from __future__ import annotations

from typing import Any

from granian.rsgi import ProtocolClosed, ProtocolError  # type: ignore[attr-defined]

__all__ = ["RawEcho", "app"]

_CLOSED = (ProtocolClosed, ProtocolError)
_CLOSE = 0
_TEXT = 2


class RawEcho:
    """A raw RSGI app: accept, then receive and send back until the client closes."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "ws":
            protocol.response_str(404, [("content-type", "text/plain")], "Not Found")
            return
        if scope.path != "/ws/echo":
            protocol.close(404)
            return
        transport = await protocol.accept()
        try:
            while True:
                message = await transport.receive()
                kind = message.kind
                if kind == _CLOSE:
                    return
                if kind == _TEXT:
                    await transport.send_str(message.data)
                else:
                    await transport.send_bytes(message.data)
        except _CLOSED:
            pass  # the client left without a close frame


app = RawEcho()
