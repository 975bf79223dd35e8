"""Which encoding a connection speaks: the client asks with ``?encoding=msgpack`` (JSON
when it does not), and one the endpoint does not offer is refused before anything else
is said on the connection."""

from __future__ import annotations

import typing
from collections.abc import Iterable

from ..errors import CloseCode
from ..websocket import WebSocket, WebSocketState
from . import protocol
from .codec import CODECS, JSON, Codec
from .protocol import INVALID_REQUEST, RPCError

__all__ = ["negotiate"]


async def negotiate(ws: WebSocket, encodings: Iterable[str]) -> Codec | None:
    """The codec the client asked for, among ``encodings``; None for another one, and
    ``ws`` refused: with HTTP 400 before it is accepted, else with a JSON-RPC error
    (in JSON) and the close code 1003."""
    name = ws.query_params.get("encoding") or "json"
    if name in encodings:
        return CODECS[name]
    if ws.connection_state is WebSocketState.CONNECTING:
        await ws.close(400)
    else:
        unknown = RPCError(INVALID_REQUEST, "Unknown encoding", name)
        await ws.send_text(typing.cast(str, JSON.encode(protocol.error(None, unknown))))
        await ws.close(CloseCode.UNSUPPORTED_DATA, "unknown encoding")
    return None
