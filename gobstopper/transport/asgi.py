"""ASGI adapter (granian ``--interface asgi``, uvicorn, ...).

ASGI delivers close codes and reasons, subprotocols and extra handshake headers, and,
with the ``websocket.http.response`` extension, a rejection with any HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping, Sequence
from typing import Any

from ..errors import CloseCode
from .base import (
    BYTES,
    CLOSE,
    TEXT,
    HTTPExchange,
    ScopeInfo,
    TransportClosed,
    WebSocketTransport,
    body_too_large,
)

__all__ = ["ASGIHTTPExchange", "ASGIScopeInfo", "ASGIWebSocketTransport", "scope_info"]

logger = logging.getLogger("gobstopper.transport")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# What ASGI servers raise when sending on a connection the client has left (the spec
# asks for an OSError subclass; granian's ASGI side drops such sends silently).
_SEND_FAILED = OSError


class ASGIScopeInfo(ScopeInfo):
    """Holds the scope's raw header list; decodes nothing until asked."""

    __slots__ = ()

    def _decode_headers(self, raw: Any) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]

    def _find_header(self, raw: Any, name: str) -> str | None:
        key = name.encode("latin-1")
        for k, v in raw:
            if k == key:
                return str(v.decode("latin-1"))
        return None


def scope_info(scope: Scope) -> ScopeInfo:
    client = scope.get("client")
    subprotocols = scope.get("subprotocols")
    return ASGIScopeInfo(
        "asgi",
        scope["path"],
        scope.get("query_string", b"").decode("utf-8", "replace"),
        scope.get("headers", ()),
        f"{client[0]}:{client[1]}" if client else None,
        scope.get("scheme", "ws"),
        scope.get("method", "GET"),
        list(subprotocols) if subprotocols else None,
    )


class ASGIWebSocketTransport(WebSocketTransport):
    __slots__ = (
        "_closed",
        "_connected",
        "_receive",
        "_scope",
        "_send",
        "cancel_receive_before_close",
        "reads_on_demand",
    )

    interface = "asgi"

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._connected = False
        self._closed = False
        # granian's ASGI side (its receive is native code) notices a departed client
        # only while a receive is pending, drops sends to it silently, and sends no
        # close frame while a receive is pending. Servers written in Python (uvicorn,
        # hypercorn, ...) notice departures themselves and fail the next send, as the
        # spec asks: with them gobstopper reads only when the handler asks.
        native = isinstance(receive, types.BuiltinFunctionType)
        self.reads_on_demand = not native
        self.cancel_receive_before_close = native

    async def _handshake(self) -> None:
        if not self._connected:
            msg = await self._receive()
            if msg["type"] != "websocket.connect":
                raise TransportClosed(msg.get("code", CloseCode.ABNORMAL_CLOSURE))
            self._connected = True

    async def accept(self, subprotocol: str | None, headers: Sequence[tuple[str, str]]) -> None:
        await self._handshake()
        message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await self._send(message)

    async def reject(self, status: int) -> None:
        await self._handshake()
        self._closed = True
        if "websocket.http.response" in self._scope.get("extensions", {}):
            body = f"{status}".encode()
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"content-length", b"%d" % len(body)),
                    ],
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": body})
        else:
            # Without the extension the server answers 403 to a close before accept.
            await self._send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})

    def receive(self) -> Any:
        return asyncio.ensure_future(self._receive())

    def unpack(self, fut: Any) -> tuple[int, Any]:
        return self._unpack(fut.result())

    async def receive_now(self) -> tuple[int, Any]:
        return self._unpack(await self._receive())

    def _unpack(self, msg: Message) -> tuple[int, Any]:
        kind = msg["type"]
        if kind == "websocket.receive":
            text = msg.get("text")
            if text is not None:
                return TEXT, text
            return BYTES, msg.get("bytes") or b""
        self._closed = True
        return CLOSE, msg.get("code", CloseCode.NORMAL_CLOSURE)

    async def send_text(self, data: str) -> None:
        try:
            await self._send({"type": "websocket.send", "text": data})
        except _SEND_FAILED:
            raise TransportClosed(CloseCode.ABNORMAL_CLOSURE) from None

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._send({"type": "websocket.send", "bytes": bytes(data)})
        except _SEND_FAILED:
            raise TransportClosed(CloseCode.ABNORMAL_CLOSURE) from None

    # ASGI servers do not promise the order of concurrent sends: one at a time.
    send_window = 1

    def start_send(self, data: str | bytes) -> Any:
        coro = self.send_text(data) if isinstance(data, str) else self.send_bytes(data)
        if not self.reads_on_demand:
            return asyncio.ensure_future(coro)
        return _start_eagerly(coro)

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except _SEND_FAILED as exc:
            # The client left first: there is nobody to tell.
            logger.debug("close(%d) after the client left: %r", code, exc)


def _start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
    """Run ``coro`` now, up to its first suspension; a task finishes it only if it does
    suspend. Servers written in Python (uvicorn's send is a write to the socket's
    buffer) mostly finish a send without suspending: no task, no loop turn per message.
    """
    loop = asyncio.get_running_loop()
    try:
        step = coro.send(None)
    except StopIteration:
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done
    except BaseException as exc:  # TransportClosed, or the server's own error
        failed: asyncio.Future[None] = loop.create_future()
        failed.set_exception(exc)
        return failed
    if step is not None:
        # What a task does with a future a coroutine yields: without it, awaiting the
        # future again raises "await wasn't used with future".
        step._asyncio_future_blocking = False
    return asyncio.ensure_future(_resume(coro, step))


async def _resume(coro: Coroutine[Any, Any, None], step: Any) -> None:
    """Drive ``coro`` on from where it suspended, awaiting what it waits for."""
    while True:
        try:
            if step is None:
                await asyncio.sleep(0)  # a bare yield: one loop turn
            else:
                step._asyncio_future_blocking = False  # as a task does, at every step
                await step  # the future the coroutine is waiting on
        except BaseException as exc:  # its outcome, or our cancellation: pass it in
            try:
                step = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                step = coro.send(None)
            except StopIteration:
                return


class ASGIHTTPExchange(HTTPExchange):
    __slots__ = ("_receive", "_send")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send

    async def body(self, limit: int | None = None) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await self._receive()
            if msg["type"] != "http.request":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    async def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        await self._send({"type": "http.response.body", "body": body})
