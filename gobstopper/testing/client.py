"""The in-process test client: an app driven through its ASGI entry point, no sockets.

``AsyncTestClient`` runs the app's lifespan (its startup hooks and broker on entry, its
shutdown on exit), opens WebSockets (``websocket_connect``), answers plain HTTP requests
(``get``, ``post``...) and gives the Python client in-process (``rpc``). Every
connection is the real code path of a connection under a server: only the wire is
missing.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from .errors import ReceiveTimeout
from .websocket import ASGIApp, AsyncWebSocketSession, Headers, Message, _decode

if TYPE_CHECKING:
    from .rpc import RPCTestClient

__all__ = ["DEFAULT_TIMEOUT", "AsyncTestClient", "TestResponse"]

logger = logging.getLogger(__name__)

#: Seconds a receive (or a handshake, a start-up) waits by default.
DEFAULT_TIMEOUT = 5.0

Params = Mapping[str, str | int | float] | Sequence[tuple[str, str | int | float]]


@dataclass
class TestResponse:
    """An HTTP answer: ``status``, ``headers`` (a dict, names in lower case; a header
    sent several times has its values joined with ``", "``, and
    ``headers.get_all("set-cookie")`` lists them apart) and ``body``."""

    __test__ = False  # not a test class, for pytest

    status: int
    headers: Headers
    body: bytes

    @property
    def text(self) -> str:
        """The body, decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return jsonlib.loads(self.body)


class AsyncTestClient:
    """Drive an app in-process, from async tests.

    Args:
        app: the app (a ``Gobstopper``, or any ASGI app).
        timeout: seconds each receive, handshake, start-up and shutdown waits by default.
        headers: headers sent with every request and handshake.
        client_host: the address the app sees connections come from (each connection
            gets a port of its own).
        lifespan: run the app's startup and shutdown (its hooks, its broker) on entry
            and exit. False sends no lifespan, as ``granian --interface asginl``: a
            gobstopper app then starts on the first request and never shuts down.

    Examples:
        ```python
        async with AsyncTestClient(app) as client:
            async with client.websocket_connect("/ws/echo") as ws:
                await ws.send_text("hi")
                assert await ws.receive_text() == "hi"
        ```

    Raises (on entry):
        RuntimeError: the app's startup failed (with its message).
        ReceiveTimeout: the startup did not finish within ``timeout``.
    """

    __test__ = False

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
        self.headers = dict(headers or {})
        self.client_host = client_host
        self._lifespan = lifespan
        self._ports = iter(range(50000, 65536))
        self._sessions: list[AsyncWebSocketSession] = []
        self._rpc_clients: list[RPCTestClient] = []
        self._life_in: asyncio.Queue[Message] = asyncio.Queue()
        self._life_out: asyncio.Queue[Message] = asyncio.Queue()
        self._life_task: asyncio.Task[None] | None = None

    # -- lifespan -----------------------------------------------------------------------

    async def __aenter__(self) -> AsyncTestClient:
        if self._lifespan:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self._life_task = asyncio.create_task(self._run_lifespan(scope))
            await self._lifespan_step("startup")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failures: list[tuple[str, Exception]] = []
        try:
            # The Python clients first: left open, they would dial again and again.
            rpcs, self._rpc_clients = self._rpc_clients, []
            for rpc in rpcs:
                await rpc.close()
            # Every session, closed or not: an app may close and then raise.
            for session in self._sessions:
                try:
                    await session.close()
                except Exception as error:  # the app's exception, or a stuck handler
                    failures.append((session.path, error))
        finally:
            self._sessions.clear()
            if self._life_task is not None:
                try:
                    await self._lifespan_step("shutdown")
                finally:
                    task, self._life_task = self._life_task, None
                    await asyncio.wait((task,), timeout=self.timeout)
                    task.cancel()
        # The first failure is raised, unless the test raised already: its own error
        # comes first. The others are logged, not lost.
        raised = failures[0][1] if failures and exc is None else None
        for path, other in failures:
            if other is not raised:
                logger.error("%s: the app failed too", path, exc_info=other)
        if raised is not None:
            raise raised

    async def _run_lifespan(self, scope: dict[str, Any]) -> None:
        await self.app(scope, self._life_in.get, self._life_out.put)

    async def _lifespan_step(self, step: str) -> None:
        assert self._life_task is not None
        self._life_in.put_nowait({"type": f"lifespan.{step}"})
        waiter = asyncio.ensure_future(self._life_out.get())
        done, _ = await asyncio.wait(
            (waiter, self._life_task), timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._life_task in done:
                self._life_task.result()  # its exception, if it raised one
                raise RuntimeError(f"the app ended its lifespan without completing {step}")
            raise ReceiveTimeout(f"the app's {step} did not finish within {self.timeout:g}s")
        answer = waiter.result()
        if answer["type"] == f"lifespan.{step}.failed":
            raise RuntimeError(f"the app's {step} failed: {answer.get('message', '')}")

    # -- WebSockets ---------------------------------------------------------------------

    def websocket_connect(
        self,
        path: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> AsyncWebSocketSession:
        """A WebSocket to ``path``; ``async with`` it to connect (and close on exit).

        Args:
            path: the route, with a query string or not (``/ws/chat?name=ann``).
            params: query parameters, added to those of ``path``.
            headers: the handshake's headers (``origin``, ``authorization``...).
            cookies: sent in a ``cookie`` header.
            subprotocols: the subprotocols offered.
            timeout: seconds each receive waits by default (default: the client's).

        Raises (on entry):
            WebSocketDenied: the app refused the handshake (``status``, ``body``).
            ReceiveTimeout: no answer to the handshake within ``timeout``.
        """
        scope = self._scope("websocket", "GET", path, params, headers, cookies)
        scope["scheme"] = "ws"
        scope["subprotocols"] = list(subprotocols or ())
        if subprotocols:
            scope["headers"].append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        # With this extension the app refuses with its real status (401, 404...).
        scope["extensions"] = {"websocket.http.response": {}}
        session = AsyncWebSocketSession(
            self.app, scope, self.timeout if timeout is None else timeout
        )
        self._sessions.append(session)
        return session

    def rpc(self, path: str, **options: Any) -> RPCTestClient:
        """The Python client (``gobstopper.client.Client``) on ``path``, in-process;
        ``async with`` it to connect.

        Args:
            path: the route of a message endpoint, with its query string.
            options: ``Client``'s keyword arguments (``encoding``, ``credentials``,
                ``on_notification``...); ``timeout`` defaults to the test client's.
        """
        from .rpc import RPCTestClient

        options.setdefault("timeout", self.timeout)
        rpc = RPCTestClient(self, path, **options)
        self._rpc_clients.append(rpc)  # closed on exit, if the test did not
        return rpc

    # -- HTTP ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        body: bytes = b"",
        json: Any = None,
    ) -> TestResponse:
        """Send one HTTP request to the app and return its answer.

        Args:
            json: a body to send as JSON (instead of ``body``), with its content type.

        Raises:
            ReceiveTimeout: no complete answer within ``timeout``.
        """
        extra = _lower(headers)
        if json is not None:
            body = jsonlib.dumps(json).encode()
            extra.setdefault("content-type", "application/json")
        scope = self._scope("http", method.upper(), path, params, extra, cookies)
        scope["headers"].append((b"content-length", str(len(body)).encode()))
        requests: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        answered = asyncio.Event()
        out: list[Message] = []

        async def receive() -> Message:
            if requests:
                return requests.pop()
            await answered.wait()  # what a server does: the client is there until then
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            out.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        try:
            await asyncio.wait_for(self.app(scope, receive, send), self.timeout)
        except asyncio.TimeoutError:
            raise ReceiveTimeout(
                f"{method} {path}: no complete answer within {self.timeout:g}s"
            ) from None
        starts = [m for m in out if m["type"] == "http.response.start"]
        if not starts:
            raise RuntimeError(f"{method} {path}: the app ended without answering")
        content = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
        return TestResponse(starts[0]["status"], _decode(starts[0].get("headers", [])), content)

    async def get(self, path: str, **options: Any) -> TestResponse:
        """``request("GET", path, ...)``."""
        return await self.request("GET", path, **options)

    async def post(self, path: str, **options: Any) -> TestResponse:
        """``request("POST", path, ...)``."""
        return await self.request("POST", path, **options)

    # -- scopes -------------------------------------------------------------------------

    def _scope(
        self,
        kind: str,
        method: str,
        path: str,
        params: Params | None,
        headers: Mapping[str, str] | None,
        cookies: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        parts = urlsplit(path)
        if parts.scheme or parts.netloc:
            raise ValueError(f"give a path, not a URL: {path!r}")
        if not parts.path.startswith("/"):
            raise ValueError(f"a path starts with '/': {path!r}")
        # What a client puts on the wire: non-ASCII and spaces percent-encoded.
        raw_path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
        query = parts.query
        if params:
            query = "&".join(q for q in (query, urlencode(params)) if q)
        # Each layer in lower case before merging: a per-call "Origin" overrides a
        # default "origin", as one header of that name would on the wire.
        merged = {"host": "testserver", **_lower(self.headers), **_lower(headers)}
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
        if cookies:
            jar = "; ".join(f"{name}={value}" for name, value in cookies.items())
            raw.append((b"cookie", jar.encode("latin-1")))
        return {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            # As a server gives them: the path percent-decoded, raw_path as sent.
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("ascii"),
            "query_string": query.encode(),
            "root_path": "",
            "headers": raw,
            "client": (self.client_host, next(self._ports)),
            "server": ("testserver", 80),
        }


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {name.lower(): value for name, value in (headers or {}).items()}
