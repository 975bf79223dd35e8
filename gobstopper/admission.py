"""Who may connect, and what is recorded about it: the origin allow-list, the connection
limits, the auth hooks, refusals, the access log and the idle sweep.

Every check runs before the handshake is answered, so a refused client gets an HTTP
status (403 origin or auth, 429 per address, 503 per worker, or the hook's own) and
never an accepted WebSocket. Each refusal and each close is counted in ``Metrics`` and
logged once on the ``gobstopper.access`` logger with ``extra`` fields (event, path,
client, and status/reason or code/closed_by), so that log pipelines need no parsing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .auth import AuthHook, Lease, run_hooks
from .errors import CloseCode, ConnectionClosed, HTTPError
from .metrics import Metrics
from .security import ConnectionLimiter, OriginPolicy
from .settings import Config
from .transport.base import TransportClosed
from .websocket import WebSocket, WebSocketState

__all__ = ["Admission", "AuthHook", "client_ip"]

logger = logging.getLogger("gobstopper")
#: One line per connection event (refused, closed, idle), with ``extra`` fields: event,
#: path, client, and status/reason or code/closed_by.
access = logging.getLogger("gobstopper.access")


class Admission:
    """The checks and the bookkeeping around every WebSocket of an app.

    Args:
        config: the origins, the connection limits and the idle timeout.
        metrics: where refusals, closes and idle closes are counted.
    """

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self._metrics = metrics
        self._idle_timeout = config.idle_timeout
        self._refresh_window = config.refresh_window
        #: The origin allow-list.
        self.origins = OriginPolicy(config.allowed_origins)
        #: The connection limits, per worker and per client address.
        self.limiter = ConnectionLimiter(
            config.max_connections or None, config.max_connections_per_ip or None
        )
        #: The app-wide auth hooks, in order.
        self.hooks: list[AuthHook] = []
        #: The WebSockets admitted and not yet finished.
        self.connections: set[WebSocket] = set()
        self._idle_task: asyncio.Task[None] | None = None

    async def enter(self, ws: WebSocket) -> bool:
        """Check the origin and the limits; True if ``ws`` may go on (call ``leave``
        once it is done), else it has been refused and finished."""
        refusal = self.admit(ws)
        if refusal is None:
            return True
        await self.refuse_now(ws, *refusal)
        return False

    def admit(self, ws: WebSocket) -> tuple[int, str, str] | None:
        """``enter`` without the refusal: None if ``ws`` may go on (call ``leave`` once
        it is done), else ``(status, reason, detail)`` for ``refuse_now``."""
        origin = ws.header("origin")
        policy = self.origins
        if origin is not None and not policy.allows(
            origin, ws.header("host"), _page_scheme(ws) if policy.same_host_only else None
        ):
            return 403, "origin", f"origin {origin!r}"
        limiter = self.limiter
        # The address is parsed only for a per-address limit.
        ip = client_ip(ws.client_address) if limiter.max_per_ip is not None else None
        refused = limiter.acquire(ip)
        if refused is not None:
            if refused.endswith("address"):
                return 429, "limit_per_ip", refused
            return 503, "limit", refused
        self.connections.add(ws)
        return None

    def needs_auth(self, route_hook: AuthHook | None) -> bool:
        """Whether ``authorise`` has a hook to run (else it would only say True)."""
        return route_hook is not None or bool(self.hooks)

    def leave(self, ws: WebSocket) -> None:
        """``ws``'s handler is done: free its place under the limits."""
        self.connections.discard(ws)
        limiter = self.limiter
        limiter.release(client_ip(ws.client_address) if limiter.max_per_ip is not None else None)

    async def authorise(self, ws: WebSocket, route_hook: AuthHook | None) -> bool:
        """Run the app's hooks, then the route's; refuse the handshake (and say False)
        if one says no, or if the ``Identity`` one returned has expired already (401).
        An ``Identity`` becomes ``ws.identity``, watched by a ``Lease`` (``ws.lease``)."""
        if route_hook is None:
            if not self.hooks:
                return True
            hooks: tuple[AuthHook, ...] = tuple(self.hooks)
        else:
            hooks = (*self.hooks, route_hook)
        try:
            identity = await run_hooks(ws, hooks)
        except HTTPError as exc:
            await self.refuse(ws, exc.status, "auth", exc.detail or str(exc.status))
            return False
        if identity is None:
            return True
        if identity.expired():
            await self.refuse(ws, 401, "auth", "credential expired")
            return False
        ws.identity = identity
        lease = ws.lease = Lease(ws, hooks, self._refresh_window)
        lease.arm()
        return True

    async def refuse(self, ws: WebSocket, status: int, reason: str, detail: str) -> None:
        """Answer the handshake with ``status`` (before accept), count and log it."""
        status = status if 400 <= status <= 599 else 403  # what close() before accept sends
        self._metrics.rejected[reason] += 1
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

    async def refuse_now(self, ws: WebSocket, status: int, reason: str, detail: str) -> None:
        """Refuse before the handler runs; a client that left meanwhile changes nothing."""
        try:
            await self.refuse(ws, status, reason, detail)
            await ws.finish(status)
        except (TransportClosed, ConnectionClosed, OSError) as exc:
            logger.debug("refusing %s: the client had left (%r)", ws.path, exc)

    def closed(self, ws: WebSocket, refused: bool = False) -> None:
        """Count and log the end of ``ws`` (``refused``: by a check above, counted there)."""
        metrics = self._metrics
        if not ws.accepted:
            # A refusal by the handler itself (close(4xx) before accept).
            if not refused and ws.close_code is not None and ws.close_code >= 400:
                metrics.rejected["handler"] += 1
            return
        code = ws.close_code
        if code is None:
            code = CloseCode.NO_STATUS_RCVD
        metrics.open_connections -= 1
        metrics.closes[code] += 1
        if access.isEnabledFor(logging.INFO):
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

    # -- idle connections -----------------------------------------------------------------

    def start_idle_sweep(self) -> None:
        """Close connections silent for ``WS_IDLE_TIMEOUT`` seconds, from now on (no-op
        when the timeout is off or the sweep runs already)."""
        if self._idle_timeout > 0 and self._idle_task is None:
            self._idle_task = asyncio.ensure_future(self._sweep())

    def stop_idle_sweep(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None

    async def _sweep(self) -> None:
        timeout = self._idle_timeout
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
        self._metrics.idle_closed += 1
        access.info(
            "websocket %s idle for %gs: closing",
            ws.path,
            timeout,
            extra={"event": "idle", "path": ws.path, "client": ws.client_address},
        )
        ws.fail(CloseCode.GOING_AWAY, "idle timeout")


def client_ip(client: str | None) -> str | None:
    """The address part of ``ip:port`` (``[v6]:port`` too)."""
    if not client:
        return None
    host, sep, port = client.rpartition(":")
    if not sep or not port.isdigit():
        return client
    return host.strip("[]")


def _page_scheme(ws: WebSocket) -> str:
    """The scheme the client connected with: a TLS-terminating proxy's
    ``X-Forwarded-Proto`` (its first value) when there is one, else the connection's own.

    Trusting the header here is safe: it guards browsers' users, and a page cannot set
    headers on a WebSocket handshake; other clients can send any Origin anyway."""
    forwarded = ws.header("x-forwarded-proto")
    if forwarded:
        return forwarded.split(",", 1)[0].strip()
    return ws.scheme
