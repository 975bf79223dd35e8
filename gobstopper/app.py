"""The application object: route table, lifecycle hooks, and the RSGI and ASGI entry points."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from .admission import Admission, AuthHook
from .api import HTTPAPI
from .brokers import Broker, broker_from_url
from .envcheck import warn_unknown_variables
from .errors import CloseCode, ConnectionClosed, HTTPError, RouteError
from .http import PlainTextResponse, Request, Response, to_response
from .manager import WebSocketManager
from .metrics import Metrics
from .routing import Route, Router
from .security import ConnectionLimiter, OriginPolicy
from .settings import Config, SettingsArgs
from .transport import asgi as asgi_adapter
from .transport import rsgi as rsgi_adapter
from .transport.base import HTTPExchange, ScopeInfo, WebSocketTransport
from .transport.granian import take_over_shutdown
from .websocket import WebSocket, WebSocketState
from .workercheck import warn_without_respawn

if TYPE_CHECKING:
    # typing.Unpack is Python 3.11+; only type checkers read this annotation.
    from typing_extensions import Unpack

__all__ = ["Gobstopper"]

logger = logging.getLogger("gobstopper")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Hook = Callable[[], Any]

# How long shutdown waits for each connection's close frame to go out.
_SHUTDOWN_CLOSE_S = 2.0


class Gobstopper:
    """A gobstopper application: an RSGI and an ASGI app in one object.

    Settings come from the arguments, else from the environment, else the defaults;
    a bad value raises ``ConfigError`` here, at start-up, naming the variable. A variable
    that looks like a setting but is none (``MAX_WS_MESSAGE_BYTE``) is logged as a
    warning naming the closest setting.

    Args:
        broker: the broker to use instead of the one ``broker_url`` names.
        metrics_path: serve the Prometheus metrics at this path (default: nowhere).
        environ: read settings from this mapping instead of ``os.environ``.
        settings: any field of ``Config`` by name (``max_message_bytes=...``), ``None``
            meaning "not given"; see docs/configuration.md. An unknown name raises
            ``TypeError``.

    Examples:
        ```python
        app = Gobstopper()

        @app.websocket("/ws/echo")
        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            async for message in ws:
                await ws.send_text(message.text)
        ```

    Run it with ``granian --interface rsgi module:app`` (or ``--interface asgi``;
    ``asginl``, ASGI without lifespan, runs the start-up on the first request and never
    the shutdown hooks).
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
        # A misspelt variable would leave its default in force without a word.
        warn_unknown_variables(environ)
        # One dead worker stops every worker unless granian replaces it.
        warn_without_respawn()
        if broker is None:
            broker = broker_from_url(self.config.broker_url, presence_ttl=self.config.presence_ttl)
        #: Rooms and broadcast for this app's connections, across workers with a broker.
        self.manager = WebSocketManager(self.config, broker)
        self.http_routes = Router()
        self.websocket_routes = Router()
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._started = False
        self._no_grace = False
        # ASGI without lifespan (granian --interface asginl, uvicorn --lifespan off): the
        # start-up then runs on the first request, once; see _start_without_lifespan.
        self._lifespan_seen = False
        self._late_start: asyncio.Future[None] | None = None
        #: This worker's counters; ``metrics.prometheus()`` gives their text form.
        self.metrics = Metrics()
        #: Who may connect (origins, limits, auth hooks), and the record of it.
        self.admission = Admission(self.config, self.metrics)
        self.metrics.extra = self._more_metrics
        if metrics_path is not None:
            self.get(metrics_path)(self._metrics_route)
        #: The HTTP API (``POST`` at ``GOBSTOPPER_API_PATH``) when ``GOBSTOPPER_API_KEY``
        #: is set; None otherwise, and the path is then an ordinary unknown one (404).
        self.api: HTTPAPI | None = None
        key = self.config.api_key
        if key is not None:
            self.api = HTTPAPI(self.manager, key, self.config.api_max_bytes)
            self.post(self.config.api_path)(self.api.handle)

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

        Examples:
            ```python
            @app.auth
            async def token(ws: WebSocket) -> None:
                if ws.query_params.get("token") != SECRET:
                    raise HTTPError(401, "bad token")
                ws.state.user = "alice"
            ```
        """
        self.admission.hooks.append(hook)
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
        self.admission.start_idle_sweep()
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
            ws
            for ws in self.admission.connections
            if ws.connection_state is WebSocketState.CONNECTED
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
        self.admission.stop_idle_sweep()
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
            request = Request(info, exchange, match.params, self.config.http_max_body_bytes or None)
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
        admission = self.admission
        refusal = admission.admit(ws)  # no coroutine: most connections are admitted
        if refusal is not None:
            await admission.refuse_now(ws, *refusal)
            return
        code: int = CloseCode.NORMAL_CLOSURE
        authorised = False
        route = match.route
        try:
            authorised = not admission.needs_auth(route.auth) or await admission.authorise(
                ws, route.auth
            )
            if authorised:
                await _call(route, ws, match.params)
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
            admission.leave(ws)
            try:
                await ws.finish(code)
            finally:
                admission.closed(ws, refused=not authorised)

    @property
    def connections(self) -> set[WebSocket]:
        """The WebSockets whose handlers are running."""
        return self.admission.connections

    @property
    def origins(self) -> OriginPolicy:
        """The origin allow-list (``WS_ALLOWED_ORIGINS``)."""
        return self.admission.origins

    @property
    def limiter(self) -> ConnectionLimiter:
        """The connection limits (``WS_MAX_CONNECTIONS``, ``WS_MAX_CONNECTIONS_PER_IP``)."""
        return self.admission.limiter

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
            transport = asgi_adapter.ASGIWebSocketTransport(scope, receive, send)
            if self._started or self._lifespan_seen or await self._start_without_lifespan():
                await self._serve_websocket(info, transport)
            else:
                await transport.reject(500)
        elif kind == "http":
            info = asgi_adapter.scope_info(scope)
            exchange = asgi_adapter.ASGIHTTPExchange(receive, send)
            if self._started or self._lifespan_seen or await self._start_without_lifespan():
                await self._serve_http(info, exchange)
            else:
                body = b"Internal Server Error: the app's start-up failed (see the server's log)"
                headers = [("content-type", "text/plain; charset=utf-8")]
                await exchange.respond(500, [*headers, ("content-length", str(len(body)))], body)
        elif kind == "lifespan":
            self._lifespan_seen = True
            await self._lifespan(receive, send)

    async def _start_without_lifespan(self) -> bool:
        """Run the start-up on the first request when the server sent no lifespan
        (``granian --interface asginl``, ``uvicorn --lifespan off``); return whether it
        succeeded. Concurrent first requests wait for the same start-up; a failed one is
        final: every request is then refused with 500."""
        if self._late_start is None:
            logger.warning(
                "the server sent no ASGI lifespan (granian --interface asginl, or uvicorn "
                "--lifespan off): running the start-up hooks now, on the first request. "
                "The shutdown hooks will NOT run, and open WebSockets are not closed "
                "gracefully when the server stops; use --interface asgi or rsgi for those"
            )
            self._late_start = asyncio.ensure_future(self.startup())
            self._late_start.add_done_callback(_log_failed_start)
        try:
            # Shielded: a request that goes away must not cancel everyone's start-up.
            await asyncio.shield(self._late_start)
        except Exception:
            return False  # logged once, by _log_failed_start
        return True

    async def _lifespan(self, receive: asgi_adapter.Receive, send: asgi_adapter.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                take_over_shutdown(
                    asyncio.get_running_loop(), self.close_connections, self._stop_now
                )
                try:
                    if not self._started:  # not started already by a request without lifespan
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


def _log_failed_start(start: asyncio.Future[None]) -> None:
    if not start.cancelled() and start.exception() is not None:
        logger.error(
            "start-up failed; every request is answered 500",
            exc_info=start.exception(),
        )


def _call(route: Route, connection: Any, params: dict[str, Any]) -> Awaitable[Any]:
    if route.pass_connection:
        return route.endpoint(connection, **params)  # type: ignore[no-any-return]
    return route.endpoint(**params)  # type: ignore[no-any-return]
