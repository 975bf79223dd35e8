"""One in-process WebSocket: the test plays the ASGI server for one connection.

The app runs in a task of its own through its ASGI entry point, so everything a real
server would reach runs: routing, origin checks, limits, auth hooks, the handler, the
manager's rooms and the message layer. Two queues stand for the wire: what the test sends
goes to the app's ``receive``, what the app sends comes out of its ``send``. A session
behaves as a server written in Python does (uvicorn): once the client has left, the app's
sends fail with ``OSError``; once the app has closed, its next ``receive`` returns the
disconnect.

Every wait is bounded (``timeout``): a test that expects a message the app never sends
fails with ``ReceiveTimeout`` instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

from ..errors import CloseCode, ConnectionClosed
from .errors import ReceiveTimeout, WebSocketDenied

__all__ = ["ASGIApp", "AsyncWebSocketSession", "Headers"]

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
#: An ASGI application, as ``Gobstopper`` is one.
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]

# Put on the app's outbound queue when the app's task ends: wakes a waiting receive.
_APP_DONE: Message = {"type": "gobstopper.testing.app_done"}


class AsyncWebSocketSession:
    """A WebSocket connected to the app in-process; use it as an async context manager
    (``AsyncTestClient.websocket_connect`` makes one).

    Attributes:
        subprotocol: the subprotocol the app accepted with (None: none).
        accept_headers: the extra headers the app accepted with, names in lower case.
        close_code: the code the connection was closed with (None while open).
        close_reason: the reason that came with it.
    """

    def __init__(self, app: ASGIApp, scope: dict[str, Any], timeout: float) -> None:
        self._app = app
        self._scope = scope
        self.timeout = timeout
        self.subprotocol: str | None = None
        self.accept_headers: dict[str, str] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._client_left = False
        self._failure_reported = False

    @property
    def path(self) -> str:
        """The path connected to."""
        return str(self._scope["path"])

    # -- opening and closing ------------------------------------------------------------

    async def __aenter__(self) -> AsyncWebSocketSession:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:
            await self.close()
        except Exception as failure:  # the test's own error comes first: log this one
            logger.error("%s: the app failed too", self.path, exc_info=failure)

    async def connect(self) -> None:
        """Run the app on this connection and wait for its answer to the handshake.

        Raises:
            WebSocketDenied: the app refused it (an HTTP status: 403, 401, 404...).
            ReceiveTimeout: no answer within ``timeout``.
        """
        if self._task is not None:
            raise RuntimeError(f"{self.path}: connect() was called already")
        self._to_app.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.create_task(self._run_app())
        try:
            first = await self._next("an answer to the handshake", self.timeout)
        except ReceiveTimeout:
            await self._leave_after_refusal()
            raise
        kind = first["type"]
        if kind == "websocket.accept":
            self.subprotocol = first.get("subprotocol")
            self.accept_headers = _decode(first.get("headers") or [])
            return
        if kind == "websocket.http.response.start":
            # The whole body first: the app may await between its parts (a middleware, a
            # streamed body), and only then does the connection end for it.
            try:
                body = await self._refusal_body()
            finally:
                await self._leave_after_refusal()
            raise WebSocketDenied(self.path, first["status"], _decode(first["headers"]), body)
        await self._leave_after_refusal()
        if kind == "websocket.close":
            # A close before accept: an ASGI server answers the handshake with 403.
            raise WebSocketDenied(self.path, 403, {}, b"")
        if first is _APP_DONE:
            raise RuntimeError(f"{self.path}: the app ended without answering the handshake")
        raise RuntimeError(
            f"{self.path}: the app sent {kind!r} before accepting or refusing the handshake"
        )

    async def _refusal_body(self) -> bytes:
        body = b""
        while True:
            part = await self._next("the refusal's body", self.timeout)
            if part is _APP_DONE:
                raise RuntimeError(f"{self.path}: the app ended in the middle of its refusal")
            if part["type"] != "websocket.http.response.body":
                raise RuntimeError(
                    f"{self.path}: the app sent {part['type']!r} in its refusal's body"
                )
            body += bytes(part.get("body", b""))
            if not part.get("more_body", False):
                return body

    async def _leave_after_refusal(self) -> None:
        """The client leaves a handshake that did not open: the app's next receive gets
        the disconnect, its next send fails; then wait for it to end (its exception, if it
        raised one, first)."""
        self._client_left = True
        self._to_app.put_nowait(
            {"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE}
        )
        await self._finish_app()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close from the client's side (if still open), then wait for the app's handler
        to end (``timeout``; cancelled after that).

        Raises:
            Exception: whatever the app's ASGI entry raised (not what a handler raised:
                gobstopper logs that and closes with 1011).
        """
        if self.close_code is None and self._task is not None and not self._task.done():
            self.close_code, self.close_reason = code, reason
            self._client_left = True
            self._to_app.put_nowait(
                {"type": "websocket.disconnect", "code": code, "reason": reason}
            )
        await self._finish_app()

    async def _finish_app(self) -> None:
        """Wait for the app's task to end (``timeout``, then cancel it and wait
        ``timeout`` more); raise its exception, once per session.

        Raises:
            ReceiveTimeout: it did not end in time (not even once cancelled).
        """
        task = self._task
        if task is None or (self._failure_reported and not task.done()):
            return  # not started, or reported stuck already: no second wait, no second error
        if not task.done():
            self._client_left = True
            done, _ = await asyncio.wait((task,), timeout=self.timeout)
            if not done:
                task.cancel()
                # Bounded too: a handler that swallows CancelledError never ends.
                done, _ = await asyncio.wait((task,), timeout=self.timeout)
                ignored = "" if done else " and ignored its cancellation"
                self._failure_reported = True
                raise ReceiveTimeout(
                    f"{self.path}: the app's handler did not end within {self.timeout:g}s "
                    f"of the client leaving{ignored}"
                )
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not self._failure_reported:
            self._failure_reported = True
            raise failure

    # -- the app's side -----------------------------------------------------------------

    async def _run_app(self) -> None:
        try:
            await self._app(self._scope, self._app_receive, self._app_send)
        finally:
            self._from_app.put_nowait(_APP_DONE)

    async def _app_receive(self) -> Message:
        return await self._to_app.get()

    async def _app_send(self, message: Message) -> None:
        if self._client_left:
            # As a server written in Python does: the client is gone, the send fails.
            raise OSError(f"{self.path}: the test client has closed the connection")
        if message["type"] == "websocket.close" and self.close_code is None:
            self.close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
            self._client_left = True  # nothing more goes out on a closed connection
            self._to_app.put_nowait({"type": "websocket.disconnect", "code": self.close_code})
        self._from_app.put_nowait(message)

    # -- the test's side ----------------------------------------------------------------

    async def _next(self, what: str, wait: float | None) -> Message:
        """The next ASGI message from the app, within ``wait`` seconds (None: no limit)."""
        try:
            return await asyncio.wait_for(self._from_app.get(), wait)
        except asyncio.TimeoutError:
            raise ReceiveTimeout(f"{self.path}: no {what} within {wait:g}s") from None

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message the app sent: ``str`` for text, ``bytes`` for binary.

        Args:
            timeout: seconds to wait (default: the session's ``timeout``).

        Raises:
            ReceiveTimeout: nothing arrived in time.
            ConnectionClosed: the connection is closed (``code``, ``reason``); every
                later receive raises it again.
        """
        return await self._receive(self.timeout if timeout is None else timeout)

    async def _receive(self, wait: float | None) -> str | bytes:
        if self._task is None:
            raise RuntimeError(f"{self.path}: connect() first")
        if self._from_app.empty() and (self.close_code is not None or self._task.done()):
            raise self._closed()
        message = await self._next("message", wait)
        kind = message["type"]
        if kind == "websocket.send":
            text = message.get("text")
            return text if text is not None else bytes(message.get("bytes") or b"")
        if kind == "websocket.close" or message is _APP_DONE:
            if message is _APP_DONE:
                self._from_app.put_nowait(_APP_DONE)  # for the next receive too
            raise self._closed()
        raise RuntimeError(f"{self.path}: unexpected ASGI message from the app: {kind}")

    def _closed(self) -> ConnectionClosed:
        if self.close_code is None:
            # The app returned without closing: its server would drop the connection.
            return ConnectionClosed.for_code(CloseCode.ABNORMAL_CLOSURE, "the app ended")
        return ConnectionClosed.for_code(self.close_code, self.close_reason)

    async def receive_text(self, timeout: float | None = None) -> str:
        """The next message, which must be text (``TypeError`` if binary)."""
        data = await self.receive(timeout)
        if not isinstance(data, str):
            raise TypeError(f"{self.path}: expected a text message, got {len(data)} bytes")
        return data

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next message, which must be binary (``TypeError`` if text)."""
        data = await self.receive(timeout)
        if not isinstance(data, bytes):
            raise TypeError(f"{self.path}: expected a binary message, got text {data[:80]!r}")
        return data

    async def receive_json(self, timeout: float | None = None) -> Any:
        """The next message (text or binary), parsed as JSON."""
        return json.loads(await self.receive(timeout))

    def _send(self, message: Message) -> None:
        if self._task is None:
            raise RuntimeError(f"{self.path}: connect() first")
        if self.close_code is not None or self._task.done():
            raise self._closed()
        self._to_app.put_nowait(message)

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Raises:
            ConnectionClosed: the connection is closed.
        """
        self._send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message (``ConnectionClosed`` if closed)."""
        self._send({"type": "websocket.receive", "bytes": bytes(data)})

    async def send_json(self, data: Any) -> None:
        """Send ``data`` as a JSON text message (``ConnectionClosed`` if closed)."""
        await self.send_text(json.dumps(data))

    async def send(self, message: str | bytes) -> None:
        """Send text (``str``) or binary (``bytes``): as a ``websockets`` connection does."""
        if isinstance(message, str):
            await self.send_text(message)
        else:
            await self.send_bytes(message)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """The messages as they come, until the connection closes.

        Raises:
            ReceiveTimeout: no message within the session's ``timeout``.
        """
        return self._messages(self.timeout)

    async def _messages(self, wait: float | None) -> AsyncIterator[str | bytes]:
        while True:
            try:
                message = await self._receive(wait)
            except ConnectionClosed:
                return
            yield message


class _UnboundedLink:
    """The session as the Python client's link uses it: its iteration waits as long as
    the connection lives (a quiet connection is not a failure there)."""

    def __init__(self, session: AsyncWebSocketSession) -> None:
        self.session = session

    @property
    def close_code(self) -> int | None:
        """The code the connection closed with (what the link reports a drop with)."""
        return self.session.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with it."""
        return self.session.close_reason

    async def send(self, message: str | bytes) -> None:
        await self.session.send(message)

    async def close(self) -> None:
        await self.session.close()

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self.session._messages(None)


class Headers(dict[str, str]):
    """Headers received, names in lower case; a name sent several times maps to its
    values joined with ``", "``, and ``get_all`` gives them apart (``set-cookie``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__()
        #: Every header as it came, in order, names in lower case.
        self.raw = items
        for key, text in items:
            self[key] = f"{self[key]}, {text}" if key in self else text

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in the order they came."""
        key = name.lower()
        return [text for k, text in self.raw if k == key]


def _decode(raw: Any) -> Headers:
    items = []
    for name, value in raw:
        key = name.decode("latin-1").lower() if isinstance(name, bytes) else name.lower()
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        items.append((key, text))
    return Headers(items)
