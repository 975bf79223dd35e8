"""JSON-RPC round trips on bare RSGI, without gobstopper: the limit for ``add(a, b)``.

Each request received on ``/rpc`` is parsed with msgspec and answered, one at a time,
as an application would write it by hand: ``add`` answers ``params[0] + params[1]``,
anything else "Method not found". JSON in text frames, or msgpack in binary frames
with ``?encoding=msgpack``. The helpers here also serve ``gob_ws_rpc``.

Run it with ``granian --interface rsgi benchmarks.apps.raw_rpc:app``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from granian.rsgi import ProtocolClosed, ProtocolError  # type: ignore[attr-defined]

__all__ = ["CHANNEL", "RawRPC", "answer", "app", "codec_for", "notification"]

CHANNEL = "news.sport"

_CLOSED = (ProtocolClosed, ProtocolError)
_CLOSE = 0
_json_encode = msgspec.json.Encoder().encode


def _json_text(obj: Any) -> str:
    return _json_encode(obj).decode()


_JSON = (msgspec.json.Decoder().decode, _json_text, False)
_MSGPACK = (msgspec.msgpack.Decoder().decode, msgspec.msgpack.Encoder().encode, True)


def codec_for(query_string: str) -> tuple[Callable[[Any], Any], Callable[[Any], Any], bool]:
    """(decode, encode, binary) for a connection: msgpack when the query asks for it."""
    return _MSGPACK if "encoding=msgpack" in query_string else _JSON


def answer(request: Any) -> dict[str, Any]:
    """The reply to one request, as a hand-written JSON-RPC endpoint computes it."""
    if request.get("method") == "add":
        a, b = request["params"]
        return {"jsonrpc": "2.0", "result": a + b, "id": request.get("id")}
    error = {"code": -32601, "message": "Method not found"}
    return {"jsonrpc": "2.0", "error": error, "id": request.get("id")}


def notification(data: Any) -> str:
    """The ``rpc.message`` notification for ``data`` on ``CHANNEL``, as JSON text."""
    params = {"channel": CHANNEL, "data": data}
    return _json_text({"jsonrpc": "2.0", "method": "rpc.message", "params": params})


class RawRPC:
    """A raw RSGI app: accept, then parse, answer and send until the client closes."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "ws":
            protocol.response_str(404, [("content-type", "text/plain")], "Not Found")
            return
        if scope.path != "/rpc":
            protocol.close(404)
            return
        decode, encode, binary = codec_for(scope.query_string)
        transport = await protocol.accept()
        send = transport.send_bytes if binary else transport.send_str
        try:
            while True:
                message = await transport.receive()
                if message.kind == _CLOSE:
                    return
                try:
                    request = decode(message.data)
                except msgspec.DecodeError:
                    continue
                await send(encode(answer(request)))
        except _CLOSED:
            pass  # the client left without a close frame


app = RawRPC()
