"""The application object: route table, lifecycle hooks, and the RSGI and ASGI entry points."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from .brokers import Broker, broker_from_url
from .errors import CloseCode, ConnectionClosed, HTTPError, RouteError
from .http import PlainTextResponse, Request, Response, to_response
from .manager import WebSocketManager
from .metrics import Metrics
from .routing import Route, Router
from .security import ConnectionLimiter, OriginPolicy
from .settings import Config, SettingsArgs
from .transport import asgi as asgi_adapter
from .transport import rsgi as rsgi_adapter
from .transport.base import HTTPExchange, ScopeInfo, TransportClosed, WebSocketTransport
from .transport.granian import take_over_shutdown
from .websocket import WebSocket, WebSocketState

if TYPE_CHECKING:
    # typing.Unpack is Python 3.11+; only type checkers read this annotation.
    from typing_extensions import Unpack

__all__ = ["Gobstopper"]

logger = logging.getLogger("gobstopper")
#: One line per connection event (refused, closed, idle), with ``extra`` fields: event,
#: path, client, and status/reason or code/closed_by.
access = logging.getLogger("gobstopper.access")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Hook = Callable[[], Any]
#: ``hook(ws)`` before accept: return False (403) or raise ``HTTPError(401, ...)`` to
#: refuse; it may set ``ws.state.user``. Sync or async.
AuthHook = Callable[[WebSocket], Any]

# How long shutdown waits for each connection's close frame to go out.
_SHUTDOWN_CLOSE_S = 2.0


class Gobstopper:
    """A gobstopper application: an RSGI and an ASGI app in one object.

    Settings come from the arguments, else from the environment, else the defaults;
    a bad value raises ``ConfigError`` here, at start-up, naming the variable.

    Args:
        broker: the broker to use instead of the one ``broker_url`` names.
        metrics_path: serve the Prometheus metrics at this path (default: nowhere).
        environ: read settings from this mapping instead of ``os.environ``.
        settings: any field of ``Config`` by name (``max_message_bytes=...``), ``None``
            meaning "not given"; see docs/configuration.md. An unknown name raises
            ``TypeError``.

    Example::

        app = Gobstopper()

        @app.websocket("/ws/echo")
        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            async for message in ws:
                await ws.send_text(message.text)

    Run it with ``granian --interface rsgi module:app`` (or ``--interface asgi``).
    """

    def __init__(
        self,
        *,
        broker: Broker | None = None,
        metrics_path: str | None = None,
        environ: Mapping[str, str] | None = None,
        **settings: Unpack[SettingsArgs],
    ) -> None:
        origins = settings.get("allowed_origins")
        if origins is not None and not isinstance(origins, str):
            # Any iterable of strings is welcome here (a set, a generator); Config takes a list.
            settings["allowed_origins"] = list(origins)
        self.config = Config.load(environ, **settings)
        if broker is None:
            broker = broker_from_url(self.config.broker_url, presence_ttl=self.config.presence_ttl)
        #: Rooms and broadcast for this app's connections, across workers with a broker.
        self.manager = WebSocketManager(self.config, broker)
        self.http_routes = Router()
        self.websocket_routes = Router()
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._started = False
        self.connections: set[WebSocket] = set()
        self._no_grace = False
        #: Who may connect: the origin allow-list and the connection limits.
        self.origins = OriginPolicy(self.config.allowed_origins)
        self.limiter = ConnectionLimiter(
            self.config.max_connections or None, self.config.max_connections_per_ip or None
        )
        self._auth: list[AuthHook] = []
        self._idle_task: asyncio.Task[None] | None = None
        #: This worker's counters; ``metrics.prometheus()`` gives their text form.
        self.metrics = Metrics()
        self.metrics.extra = self._more_metrics
        if metrics_path is not None:
            self.get(metrics_path)(self._metrics_route)

    # -- registration -------------------------------------------------------------------

    def websocket(self, path: str, *, auth: AuthHook | None = None) -> Callable[[F], F]:
        """Register a WebSocket handler: ``async def handler(ws, **path_params)``.

        Args:
            path: the route, e.g. ``/ws/chat/<room>``.
            auth: a hook run before the handler (after the app-wide ones, see
                ``auth()``): ``hook(ws)`` returns False to refuse with 403, or raises
                ``HTTPError(401)`` (any 4xx/5xx); it may set ``ws.state.user``.
        """

        def decorator(fn: F) -> F:
            route = self.websocket_routes.add(path, fn, takes_connection="websocket")
            route.auth = auth
            return fn

        return decorator

    def auth(self, hook: AuthHook) -> AuthHook:
        """Register an app-wide authentication hook, run before every WebSocket
        handler (see ``websocket(auth=...)``). Use it as a decorator.

        Example::

            @app.auth
            async def token(ws: WebSocket) -> None:
                if ws.query_params.get("token") != SECRET:
                    raise HTTPError(401, "bad token")
                ws.state.user = "alice"
        """
        self._auth.append(hook)
        return hook

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[F], F]:
        """Register an HTTP handler for ``methods``.

        The handler may take the ``Request`` as its first argument, and takes path
        parameters by name. It returns a ``Response``, ``str`` (text), ``dict``/``list``
        (JSON), ``bytes`` or ``None`` (204).
        """
        if isinstance(methods, str):
            raise RouteError(f"methods must be a list of names, e.g. [{methods!r}], not a string")
        method_list = [m.upper() for m in methods]
        if not method_list:
            raise RouteError(f"route {path!r} needs at least one method")
        if "GET" in method_list and "HEAD" not in method_list:
            method_list.append("HEAD")

        def decorator(fn: F) -> F:
            self.http_routes.add(path, fn, method_list)
            return fn

        return decorator

    def get(self, path: str) -> Callable[[F], F]:
        """Register a GET (and HEAD) handler."""
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[F], F]:
        """Register a POST handler."""
        return self.route(path, ("POST",))

    def on_startup(self, fn: Hook) -> Hook:
        """Run ``fn`` (sync or async) once before the server takes requests."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """Run ``fn`` (sync or async) once when the server stops."""
        self._shutdown.append(fn)
        return fn

    # -- lifecycle ------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the broker, then run the startup hooks (the server calls this; tests may too)."""
        await self.manager.start()
        if self.config.idle_timeout > 0 and self._idle_task is None:
            self._idle_task = asyncio.ensure_future(self._close_idle())
        for hook in self._startup:
            result = hook()
            if inspect.isawaitable(result):
                await result
        self._started = True

    def _stop_now(self) -> None:
        """A forced stop: later closing must not wait on anything."""
        self._no_grace = True

    async def close_connections(self) -> None:
        """Flush managed queues (at most ``WS_SHUTDOWN_GRACE``), then close every open
        WebSocket with 1001. Runs on the server's stop signal, before it drops sockets."""
        if self._no_grace:
            await self.manager.shutdown(grace=0, handshake=0)
        else:
            await self.manager.shutdown()
        open_sockets = [
            ws for ws in self.connections if ws.connection_state is WebSocketState.CONNECTED
        ]
        if open_sockets:
            # Bounded: once the server has stopped serving, a close frame may never go out.
            await asyncio.gather(
                *(
                    ws.close_within(
                        CloseCode.GOING_AWAY,
                        "server shutting down",
                        0.1 if self._no_grace else _SHUTDOWN_CLOSE_S,
                        0.0 if self._no_grace else 1.0,
                    )
                    for ws in open_sockets
                )
            )

    async def shutdown(self) -> None:
        """Close open WebSockets (see ``close_connections``), then run the shutdown hooks
        in reverse order of registration."""
        await self.close_connections()
        for hook in reversed(self._shutdown):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("shutdown hook %r failed", hook)
        await self.manager.stop()
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None
        self._started = False

    # -- dispatch -------------------------------------------------------------------------

    async def _serve_http(self, info: ScopeInfo, exchange: HTTPExchange) -> None:
        match, allowed = self.http_routes.resolve(info.path, info.method)
        if match is None:
            if allowed:
                response: Response = PlainTextResponse(
                    "Method Not Allowed", 405, {"allow": ", ".join(sorted(allowed))}
                )
            else:
                response = PlainTextResponse("Not Found", 404)
        else:
            request = Request(info, exchange, match.params)
            try:
                response = to_response(await _call(match.route, request, match.params))
            except HTTPError as exc:
                response = PlainTextResponse(exc.detail, exc.status, exc.headers)
            except Exception:
                logger.exception(
                    "HTTP handler %s failed for %s %s", match.route.name, info.method, info.path
                )
                response = PlainTextResponse("Internal Server Error", 500)
        body = b"" if info.method == "HEAD" else response.body
        await exchange.respond(response.status, response.header_list(), body)

    async def _serve_websocket(self, info: ScopeInfo, transport: WebSocketTransport) -> None:
        match, _ = self.websocket_routes.resolve(info.path)
        if match is None:
            await transport.reject(404)
            return
        ws = WebSocket(transport, info, self.config, match.params, self.metrics)
        ip = _ip(info.client)
        if not self.origins.allows(ws.headers.get("origin"), ws.headers.get("host")):
            await self._refuse_now(ws, 403, "origin", f"origin {ws.headers.get('origin')!r}")
            return
        refused = self.limiter.acquire(ip)
        if refused is not None:
            per_ip = refused.endswith("address")
            status = 429 if per_ip else 503
            await self._refuse_now(ws, status, "limit_per_ip" if per_ip else "limit", refused)
            return
        self.connections.add(ws)
        code: int = CloseCode.NORMAL_CLOSURE
        authorised = False
        try:
            authorised = await self._authorised(ws, match.route)
            if authorised:
                await _call(match.route, ws, match.params)
        except asyncio.CancelledError:
            code = CloseCode.GOING_AWAY  # the server is cancelling us: say so, then go
            raise
        except ConnectionClosed as exc:
            logger.debug("websocket %s closed: %s", info.path, exc)
        except Exception:
            if ws.connection_state is WebSocketState.CONNECTING:
                logger.exception("websocket handler %s failed before accept", match.route.name)
                await ws.close(500)
            else:
                logger.exception("websocket handler %s failed", match.route.name)
                code = CloseCode.INTERNAL_ERROR
        finally:
            self.connections.discard(ws)
            self.limiter.release(ip)
            try:
                await ws.finish(code)
            finally:
                self._account_close(ws, refused=not authorised)

    async def _authorised(self, ws: WebSocket, route: Route) -> bool:
        """Run the auth hooks; refuse the handshake (and say False) if one says no."""
        hooks = [*self._auth, route.auth] if route.auth is not None else self._auth
        for hook in hooks:
            try:
                result = hook(ws)
                if inspect.isawaitable(result):
                    result = await result
            except HTTPError as exc:
                await self._refuse(ws, exc.status, "auth", exc.detail or str(exc.status))
                return False
            if result is False:
                await self._refuse(ws, 403, "auth", "refused by the auth hook")
                return False
        return True

    async def _refuse(self, ws: WebSocket, status: int, reason: str, detail: str) -> None:
        """Answer the handshake with ``status`` (before accept) and count it."""
        status = status if 400 <= status <= 599 else 403  # what close() before accept sends
        self.metrics.rejected[reason] += 1
        access.info(
            "websocket refused %s %d (%s): %s",
            ws.path,
            status,
            reason,
            detail,
            extra={
                "event": "reject",
                "path": ws.path,
                "client": ws.client_address,
                "status": status,
                "reason": reason,
            },
        )
        if ws.connection_state is WebSocketState.CONNECTING:
            await ws.close(status)

    async def _refuse_now(self, ws: WebSocket, status: int, reason: str, detail: str) -> None:
        """Refuse before the handler runs; a client that left meanwhile changes nothing."""
        try:
            await self._refuse(ws, status, reason, detail)
            await ws.finish(status)
        except (TransportClosed, ConnectionClosed, OSError) as exc:
            logger.debug("refusing %s: the client had left (%r)", ws.path, exc)

    def _account_close(self, ws: WebSocket, refused: bool = False) -> None:
        if not ws.accepted:
            # A refusal by the handler itself (close(4xx) before accept); refusals by the
            # checks above are counted where they happen.
            if not refused and ws.close_code is not None and ws.close_code >= 400:
                self.metrics.rejected["handler"] += 1
            return
        code = ws.close_code if ws.close_code is not None else CloseCode.NO_STATUS_RCVD
        self.metrics.open_connections -= 1
        self.metrics.closes[code] += 1
        access.info(
            "websocket closed %s %d by the %s",
            ws.path,
            code,
            ws.closed_by,
            extra={
                "event": "close",
                "path": ws.path,
                "client": ws.client_address,
                "code": code,
                "closed_by": ws.closed_by,
            },
        )

    async def _close_idle(self) -> None:
        """Close connections that have sent nothing for ``WS_IDLE_TIMEOUT`` seconds."""
        timeout = self.config.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            deadline = time.monotonic() - timeout
            for ws in tuple(self.connections):
                try:
                    self._check_idle(ws, deadline, timeout)
                except Exception:  # one connection's trouble must not stop the sweeper
                    logger.exception("idle check failed for %s", ws.path)

    def _check_idle(self, ws: WebSocket, deadline: float, timeout: float) -> None:
        if ws.last_received > deadline or ws.connection_state is not WebSocketState.CONNECTED:
            return
        if ws.has_unread:
            return  # messages wait for a busy handler: the client is not idle
        if not ws.reads_ahead:
            # Nothing is read while its handler is not reading (uvicorn): read now, and
            # look again at the next round.
            if not ws.reading_now:  # its handler is reading: that read will tell
                ws.read_ahead()
            ws.last_received = time.monotonic() - timeout / 2
            return
        self.metrics.idle_closed += 1
        access.info(
            "websocket %s idle for %gs: closing",
            ws.path,
            timeout,
            extra={"event": "idle", "path": ws.path, "client": ws.client_address},
        )
        ws.fail(CloseCode.GOING_AWAY, "idle timeout")

    def _more_metrics(self) -> dict[str, float]:
        stats = self.manager.stats
        figures: dict[str, float] = {
            "delivered_messages": stats.sent,
            "delivered_bytes": stats.sent_bytes,
            "dropped_messages": stats.dropped,
            "slow_consumers_closed": stats.slow_closed,
        }
        health = self.manager.broker_health()
        if health is not None and health.url != "memory://":
            figures["broker_connected"] = 1.0 if health.connected else 0.0
            figures["broker_reconnects"] = health.reconnects
            figures["broker_dropped_messages"] = health.dropped
        return figures

    async def _metrics_route(self) -> Response:
        return PlainTextResponse(
            self.metrics.prometheus(), 200, {"content-type": "text/plain; version=0.0.4"}
        )

    # -- RSGI ----------------------------------------------------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        take_over_shutdown(loop, self.close_connections, self._stop_now)
        loop.run_until_complete(self.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.shutdown())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        info = rsgi_adapter.scope_info(scope)
        if scope.proto == "ws":
            await self._serve_websocket(info, rsgi_adapter.RSGIWebSocketTransport(protocol))
        else:
            await self._serve_http(info, rsgi_adapter.RSGIHTTPExchange(protocol))

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: asgi_adapter.Receive,
        send: asgi_adapter.Send,
    ) -> None:
        kind = scope["type"]
        if kind == "websocket":
            info = asgi_adapter.scope_info(scope)
            await self._serve_websocket(
                info, asgi_adapter.ASGIWebSocketTransport(scope, receive, send)
            )
        elif kind == "http":
            info = asgi_adapter.scope_info(scope)
            await self._serve_http(info, asgi_adapter.ASGIHTTPExchange(receive, send))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: asgi_adapter.Receive, send: asgi_adapter.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                take_over_shutdown(
                    asyncio.get_running_loop(), self.close_connections, self._stop_now
                )
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _call(route: Route, connection: Any, params: dict[str, Any]) -> Awaitable[Any]:
    if route.pass_connection:
        return route.endpoint(connection, **params)  # type: ignore[no-any-return]
    return route.endpoint(**params)  # type: ignore[no-any-return]


def _ip(client: str | None) -> str | None:
    """The address part of ``ip:port`` (``[v6]:port`` too)."""
    if not client:
        return None
    host, sep, port = client.rpartition(":")
    if not sep or not port.isdigit():
        return client
    return host.strip("[]")
