"""The in-process test client for plain (synchronous) tests.

``TestClient`` runs ``AsyncTestClient`` on an event loop of its own, in a background
thread, as Starlette's ``TestClient`` does: the app's tasks (its handlers, the manager's
delivery, the broker) run there while the test's thread waits for each answer. Every
call is bounded by the timeouts of the async client, so a test never hangs on a message
that does not come.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .client import DEFAULT_TIMEOUT, AsyncTestClient, Params, TestResponse
from .errors import ReceiveTimeout
from .websocket import ASGIApp, AsyncWebSocketSession

__all__ = ["TestClient", "WebSocketSession"]

T = TypeVar("T")

# The test's thread waits this much longer than the loop's own timeouts: those fire
# first, with their clear error; this only guards against a loop that stopped turning.
_MARGIN_S = 5.0


class _Loop:
    """An event loop turning in a daemon thread; ``call`` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="gobstopper-testclient", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout + _MARGIN_S)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the coroutine's own timeout (ReceiveTimeout is a TimeoutError)
            future.cancel()
            raise ReceiveTimeout(
                f"the test client's loop did not answer within {timeout:g}s"
            ) from None

    def stop(self, timeout: float = _MARGIN_S) -> None:
        """Cancel what still runs there, then stop and close the loop.

        The loop and its thread stop even when a task ignores its cancellation.

        Args:
            timeout: seconds the cancelled tasks have to end.

        Raises:
            ReceiveTimeout: tasks of the app did not end once cancelled (a handler that
                swallows ``CancelledError``), or the loop's thread did not stop.
        """
        if self.loop.is_closed():
            return
        stuck = None
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout)
        except concurrent.futures.TimeoutError:
            stuck = f"tasks of the app did not end within {timeout:g}s of being cancelled"
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_MARGIN_S)
        if self._thread.is_alive():
            # A callback that blocks the loop: the loop cannot be closed under it.
            raise ReceiveTimeout(
                f"the test client's loop did not stop within {_MARGIN_S:g}s; its thread "
                "is left running"
            )
        self.loop.close()
        if stuck is not None:
            raise ReceiveTimeout(stuck + " (does a handler swallow CancelledError?)")


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class WebSocketSession:
    """The synchronous face of ``AsyncWebSocketSession``: the same methods, blocking;
    ``with`` it to connect (``WebSocketDenied`` on a refusal) and to close."""

    def __init__(self, session: AsyncWebSocketSession, loop: _Loop) -> None:
        self._session = session
        self._loop = loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._loop.call(coro, self._session.timeout if timeout is None else timeout)

    def __enter__(self) -> WebSocketSession:
        self._call(self._session.connect())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Closing waits up to twice the timeout: for the handler, then for its cancellation.
        self._call(self._session.__aexit__(exc_type, exc, tb), 2 * self._session.timeout)

    @property
    def path(self) -> str:
        """The path connected to."""
        return self._session.path

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the app accepted with (None: none)."""
        return self._session.subprotocol

    @property
    def accept_headers(self) -> dict[str, str]:
        """The extra headers the app accepted with, names in lower case."""
        return self._session.accept_headers

    @property
    def close_code(self) -> int | None:
        """The code the connection was closed with (None while open)."""
        return self._session.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with the close code."""
        return self._session.close_reason

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client's side and wait for the app's handler to end."""
        self._call(self._session.close(code, reason), 2 * self._session.timeout)

    def send_text(self, data: str) -> None:
        """Send a text message (``ConnectionClosed`` if closed)."""
        self._call(self._session.send_text(data))

    def send_bytes(self, data: bytes) -> None:
        """Send a binary message (``ConnectionClosed`` if closed)."""
        self._call(self._session.send_bytes(data))

    def send_json(self, data: Any) -> None:
        """Send ``data`` as a JSON text message (``ConnectionClosed`` if closed)."""
        self._call(self._session.send_json(data))

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message: ``str`` or ``bytes`` (``ReceiveTimeout``, ``ConnectionClosed``)."""
        return self._call(self._session.receive(timeout), timeout)

    def receive_text(self, timeout: float | None = None) -> str:
        """The next message, which must be text."""
        return self._call(self._session.receive_text(timeout), timeout)

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next message, which must be binary."""
        return self._call(self._session.receive_bytes(timeout), timeout)

    def receive_json(self, timeout: float | None = None) -> Any:
        """The next message, parsed as JSON."""
        return self._call(self._session.receive_json(timeout), timeout)


class TestClient:
    """Drive an app in-process from plain tests; its loop runs in a background thread.

    Takes the arguments of ``AsyncTestClient`` and offers its methods, blocking. Use it
    as a context manager: entering runs the app's startup, leaving closes what is still
    open, runs the shutdown and stops the thread.

    Examples:
        ```python
        with TestClient(app) as client:
            with client.websocket_connect("/ws/echo") as ws:
                ws.send_json({"n": 1})
                assert ws.receive_json() == {"n": 1}
        ```
    """

    __test__ = False  # not a test class, for pytest

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        client_host: str = "127.0.0.1",
        lifespan: bool = True,
    ) -> None:
        self.app = app
        self.timeout = timeout
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "headers": headers,
            "client_host": client_host,
            "lifespan": lifespan,
        }
        self._loop: _Loop | None = None
        self._client: AsyncTestClient | None = None

    def __enter__(self) -> TestClient:
        self._loop = _Loop()
        try:
            self._client = self._loop.call(self._open(), self.timeout)
        except BaseException:
            with contextlib.suppress(ReceiveTimeout):
                self._loop.stop(self.timeout)
            self._loop = None
            raise
        return self

    async def _open(self) -> AsyncTestClient:
        client = AsyncTestClient(self.app, **self._options)
        return await client.__aenter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, client = self._loop, self._client
        self._loop = self._client = None
        if loop is None or client is None:
            return
        try:
            # Each session may take twice its timeout to close, the shutdown two more.
            budget = 2 * (self.timeout + sum(ws.timeout for ws in client._sessions))
            loop.call(client.__aexit__(exc_type, exc, tb), budget)
        except BaseException:
            # The first error is the one to see: the loop still stops, quietly.
            with contextlib.suppress(ReceiveTimeout):
                loop.stop(self.timeout)
            raise
        if exc is not None:  # the same: the test's own error comes first
            with contextlib.suppress(ReceiveTimeout):
                loop.stop(self.timeout)
        else:
            loop.stop(self.timeout)

    def _running(self) -> tuple[_Loop, AsyncTestClient]:
        if self._loop is None or self._client is None:
            raise RuntimeError("use the TestClient in a with block: with TestClient(app) as c:")
        return self._loop, self._client

    def websocket_connect(
        self,
        path: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> WebSocketSession:
        """A WebSocket to ``path``; ``with`` it to connect (see
        ``AsyncTestClient.websocket_connect``; ``WebSocketDenied`` on a refusal)."""
        loop, client = self._running()
        session = client.websocket_connect(
            path,
            params=params,
            headers=headers,
            cookies=cookies,
            subprotocols=subprotocols,
            timeout=timeout,
        )
        return WebSocketSession(session, loop)

    def request(self, method: str, path: str, **options: Any) -> TestResponse:
        """One HTTP request (see ``AsyncTestClient.request``)."""
        loop, client = self._running()
        return loop.call(client.request(method, path, **options), self.timeout)

    def get(self, path: str, **options: Any) -> TestResponse:
        """``request("GET", path, ...)``."""
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> TestResponse:
        """``request("POST", path, ...)``."""
        return self.request("POST", path, **options)
