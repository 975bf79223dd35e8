"""Granian RSGI adapter.

RSGI limits that shape this adapter (granian 2.8): ``close(status)`` before accept
answers the upgrade with that HTTP status; after accept it sends an empty close frame,
so the client sees 1005 whatever code we pass; no subprotocols, no extra headers, no
ping and no drain. ``receive()`` returns a future that starts reading at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from granian.rsgi import ProtocolClosed, ProtocolError  # type: ignore[attr-defined]

from ..errors import CloseCode, UnsupportedByServer
from .base import (
    CLOSE,
    HTTPExchange,
    ScopeInfo,
    TransportClosed,
    WebSocketTransport,
    body_too_large,
)

logger = logging.getLogger("gobstopper.transport")

__all__ = ["RSGIHTTPExchange", "RSGIScopeInfo", "RSGIWebSocketTransport", "scope_info"]

_CLOSED = (ProtocolClosed, ProtocolError)
_WS_SCHEMES = {"http": "ws", "https": "wss"}


class RSGIScopeInfo(ScopeInfo):
    """Holds granian's scope: reads the client's address, the query string, the scheme
    and the method from it when asked (each read is a call into granian, and most
    connections need none of them), and decodes no header until asked."""

    __slots__ = ("_scope",)

    def __init__(self, scope: Any, path: str) -> None:
        self.interface = "rsgi"
        self.path = path
        self._scope = scope
        self._raw_headers = scope.headers
        self._headers = None
        self._subprotocols = None

    @property
    def client(self) -> str | None:  # type: ignore[override]
        client: str | None = self._scope.client
        return client

    @property
    def query_string(self) -> str:  # type: ignore[override]
        query: str = self._scope.query_string
        return query

    @property
    def scheme(self) -> str:  # type: ignore[override]
        scope = self._scope
        scheme: str = scope.scheme
        # RSGI says http/https for a WebSocket too; ASGI says ws/wss: speak ASGI's way.
        return _WS_SCHEMES.get(scheme, scheme) if scope.proto == "ws" else scheme

    @property
    def method(self) -> str:  # type: ignore[override]
        method: str = self._scope.method
        return method

    def _decode_headers(self, raw: Any) -> list[tuple[str, str]]:
        return list(raw.items())

    def _find_header(self, raw: Any, name: str) -> str | None:
        value: str | None = raw.get(name)
        return value


def scope_info(scope: Any) -> ScopeInfo:
    return RSGIScopeInfo(scope, scope.path)


class RSGIWebSocketTransport(WebSocketTransport):
    __slots__ = ("_closed", "_protocol", "_transport")

    interface = "rsgi"

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport: Any = None
        self._closed = False

    async def accept(self, subprotocol: str | None, headers: Sequence[tuple[str, str]]) -> None:
        if subprotocol is not None or headers:
            raise UnsupportedByServer(
                "RSGI cannot send a subprotocol or extra headers with accept(); "
                "run with `granian --interface asgi` for that"
            )
        try:
            self._transport = await self._protocol.accept()
        except _CLOSED as exc:
            _forget_frames(exc)
            self._closed = True
            raise TransportClosed(CloseCode.ABNORMAL_CLOSURE) from None

    async def reject(self, status: int) -> None:
        self._closed = True
        self._protocol.close(status)

    def receive(self) -> Any:
        return self._transport.receive()

    def unpack(self, fut: Any) -> tuple[int, Any]:
        # Read the outcome without raising it: a raised exception would take our frames
        # into its traceback, and granian keeps the exception (in the future) longer
        # than the connection, so the frames (and the connection) would never be freed.
        exc = fut.exception()
        if exc is not None:
            if not isinstance(exc, _CLOSED):
                logger.warning("receive failed: %r; treating the connection as lost", exc)
            raise TransportClosed(
                CloseCode.NO_STATUS_RCVD if isinstance(exc, _CLOSED) else CloseCode.ABNORMAL_CLOSURE
            )
        msg = fut.result()
        kind = msg.kind
        if kind == CLOSE:
            # RSGI does not show the client's close code.
            return CLOSE, CloseCode.NO_STATUS_RCVD
        return int(kind), msg.data

    async def send_text(self, data: str) -> None:
        try:
            await self._transport.send_str(data)
        except _CLOSED as exc:
            _forget_frames(exc)
            raise TransportClosed(CloseCode.NO_STATUS_RCVD) from None

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._transport.send_bytes(data)
        except _CLOSED as exc:
            _forget_frames(exc)
            raise TransportClosed(CloseCode.NO_STATUS_RCVD) from None

    # granian schedules a send when it is called and keeps started sends in order, so
    # broadcast may start many without awaiting them (see docs/rooms.md).
    send_window = 64
    # A dropped send future logs nothing, and sends finish in order: delivery holds only
    # the future of one send in 8 (fewer live futures make granian's send call cheaper).
    send_group = 8

    def senders(
        self,
    ) -> tuple[Callable[[str], Any], Callable[[bytes], Any], tuple[type[BaseException], ...]]:
        # granian's own methods: broadcast then makes no Python call of ours per send.
        return self._transport.send_str, self._transport.send_bytes, (*_CLOSED, TransportClosed)

    def start_send(self, data: str | bytes) -> Any:
        try:
            if type(data) is str:
                return self._transport.send_str(data)
            return self._transport.send_bytes(data)
        except _CLOSED as exc:
            _forget_frames(exc)
            raise TransportClosed(CloseCode.NO_STATUS_RCVD) from None

    def release(self) -> None:
        # granian finishes a connection (e.g. answers the client's close frame) when
        # its objects are freed: never let a lingering WebSocket keep them alive.
        self._closed = True
        self._protocol = None
        self._transport = None

    # close() only hands the close to granian, which sends the frame by itself.
    closes_at_once = True

    def close_now(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._protocol.close(code)

    async def close(self, code: int, reason: str) -> None:
        self.close_now(code, reason)


class RSGIHTTPExchange(HTTPExchange):
    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    async def body(self, limit: int | None = None) -> bytes:
        if limit is None:
            data: bytes = await self._protocol()
            return data
        # Chunk by chunk, so that an oversized body is refused without being held.
        chunks: list[bytes] = []
        size = 0
        async for chunk in self._protocol:
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._protocol.response_bytes(status, headers, body)


def _forget_frames(exc: BaseException) -> None:
    """Drop a granian exception's traceback once handled: granian may keep the exception
    (in a future) after the connection ends, and its frames would keep the connection's
    objects, handler included, alive with it."""
    exc.__traceback__ = None
