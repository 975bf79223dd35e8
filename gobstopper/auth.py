"""Who a connection belongs to, and for how long: the ``Identity`` an auth hook returns,
the credential it reads, and the one timer that watches its expiry.

An auth hook (``@app.auth``, ``@app.websocket(..., auth=...)``) may return an
``Identity`` instead of True: the connection then belongs to ``user`` (presence lists it
under that user, ``disconnect_user`` reaches it), carries ``meta`` (what presence shows
of it: a name, a device, a status) and, with ``expires_at``, must present a new
credential before then (``rpc.refresh``, or ``refresh(ws, token)``) or be closed with
4001.

A hook reads the credential with ``credential(ws)``: the ``Authorization: Bearer``
header, else the ``token`` query parameter, and during a refresh the token being
presented. So the same hook checks the handshake and every refresh.

Each connection admitted with an ``Identity`` gets a ``Lease`` (``ws.lease``): the hooks
that admitted it, which a refresh runs again, and a single ``loop.call_at`` handle, armed
for the next thing due (the message layer's "refresh due" push, then the expiry),
replaced by a refresh and cancelled when the connection closes. The docs are in
``docs/auth.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._util import Throttle
from .errors import CloseCode, GobstopperError, HTTPError

if TYPE_CHECKING:
    from .connection import ServerConnection
    from .websocket import WebSocket

__all__ = [
    "AuthHook",
    "Identity",
    "Lease",
    "RefreshRefused",
    "credential",
    "refresh",
    "run_hooks",
]

access = logging.getLogger("gobstopper.access")
logger = logging.getLogger("gobstopper")
# A hook that fails on every refresh must not flood the log.
_hook_failures = Throttle(logger)

#: ``hook(ws)`` before accept (and on every refresh): return False (403) or raise
#: ``HTTPError(401, ...)`` to refuse, an ``Identity`` to say whose connection it is,
#: True or None to let it in. Sync or async.
AuthHook = Callable[["WebSocket"], Any]

#: The close reasons gobstopper gives with ``CloseCode.UNAUTHORIZED`` and ``FORBIDDEN``.
EXPIRED = "credential expired"
REFUSED = "refresh refused"
OTHER_USER = "refresh for another user"


@dataclass(frozen=True)
class Identity:
    """What an auth hook found out about a connection.

    Example: ``return Identity("ann", {"name": "Ann"}, expires_at=claims["exp"])``.

    Attributes:
        user: the user the connection belongs to (several connections may).
        meta: JSON-able facts presence shows about this connection; at most
            ``GOBSTOPPER_PRESENCE_META_BYTES`` as JSON.
        expires_at: when the credential expires (``time.time()`` seconds, a JWT's
            ``exp``); None: never. A finite number.
    """

    user: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user:
            raise ValueError(f"Identity.user must be a non-empty string, not {self.user!r}")
        if not isinstance(self.meta, Mapping):
            raise TypeError(f"Identity.meta must be a mapping, not {type(self.meta).__name__}")
        expires = self.expires_at
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, (int, float))
        ):
            raise TypeError(f"Identity.expires_at must be a number of seconds, not {expires!r}")
        if expires is not None and not math.isfinite(expires):
            # inf would be a credential for ever, NaN one that never compares as expired.
            raise ValueError(f"Identity.expires_at must be finite, not {expires!r}")

    def expired(self, now: float | None = None) -> bool:
        """Whether ``expires_at`` has passed (at ``now``, ``time.time()`` by default)."""
        expires = self.expires_at
        return expires is not None and expires <= (time.time() if now is None else now)


class RefreshRefused(GobstopperError):
    """A new credential was not accepted: close the connection with ``code``, ``reason``.

    Attributes:
        code: ``CloseCode.UNAUTHORIZED`` (refused, invalid, expired) or
            ``CloseCode.FORBIDDEN`` (an ``Identity`` for another user).
        reason: the close reason (``"refresh refused"``, ``"refresh for another user"``).
        detail: what the hook said (an ``HTTPError``'s detail), for logs.
    """

    def __init__(self, code: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.code = code
        self.reason = reason
        self.detail = detail


# The token being presented by a refresh, and the connection it is for: only that
# connection's credential(ws) sees it, and only while its hooks run.
_presented: ContextVar[tuple[object, str] | None] = ContextVar("gobstopper_presented", default=None)


def credential(ws: WebSocket) -> str | None:
    """The credential ``ws`` presents: during a refresh, the new token; otherwise the
    ``Authorization: Bearer <token>`` header, else the ``token`` query parameter (what
    browsers can send); None when there is none.

    Auth hooks that read it here work for the handshake and for refreshes alike.
    """
    presented = _presented.get()
    if presented is not None and presented[0] is ws:
        return presented[1]
    header = ws.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return value
    return ws.query_params.get("token") or None


async def run_hooks(ws: WebSocket, hooks: Iterable[AuthHook]) -> Identity | None:
    """Run ``hooks`` in order on ``ws``; the last ``Identity`` one returned, or None.

    Raises:
        HTTPError: a hook refused: its own, or 403 for one that returned False.
    """
    identity: Identity | None = None
    for hook in hooks:
        result = hook(ws)
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            raise HTTPError(403, "refused by the auth hook")
        if isinstance(result, Identity):
            identity = result
    return identity


class Lease:
    """A connection admitted with an ``Identity``: the hooks that admitted it (a refresh
    runs them again) and one timer for what its expiry brings.

    Without watchers the timer closes the connection at ``expires_at`` (4001
    "credential expired"). The message layer ``watch``es it: ``on_due(expires_at,
    seconds_left)`` at ``expires_at - min(window, left / 2)``, and ``on_expired()``
    instead of the plain close.

    Once expired the lease has ``ended``: it never renews again (a refresh then is
    refused with 4001 "credential expired"), whatever is still on its way.

    Args:
        ws: the connection; ``ws.identity`` is the Identity watched.
        hooks: the auth hooks that admitted it, app-wide then the route's.
        window: how long before the expiry ``on_due`` is called at most
            (``GOBSTOPPER_REFRESH_WINDOW``).
    """

    __slots__ = ("_handle", "_on_due", "_on_expired", "_window", "_ws", "ended", "hooks")

    def __init__(self, ws: WebSocket, hooks: tuple[AuthHook, ...], window: float) -> None:
        self._ws = ws
        self.hooks = hooks
        self._window = window
        self._handle: asyncio.TimerHandle | None = None
        self._on_due: Callable[[float, float], None] | None = None
        self._on_expired: Callable[[], None] | None = None
        #: The credential expired: the connection is being closed, nothing renews it.
        self.ended = False
        ws.add_close_callback(self._closed)

    def arm(self) -> None:
        """(Re)start the timer for ``ws.identity``'s expiry (none when it has none)."""
        self.cancel()
        identity = self._ws.identity
        if self.ended or identity is None or identity.expires_at is None or self._ws.closed:
            return
        expires = identity.expires_at
        loop = asyncio.get_running_loop()
        left = expires - time.time()
        if self._on_due is not None:
            lead = min(self._window, left / 2)
            self._handle = loop.call_at(loop.time() + left - lead, self._due, expires)
        else:
            self._handle = loop.call_at(loop.time() + left, self.expire)

    def watch(self, on_due: Callable[[float, float], None], on_expired: Callable[[], None]) -> None:
        """Call ``on_due`` before the expiry and ``on_expired`` at it, instead of closing."""
        self._on_due, self._on_expired = on_due, on_expired
        self.arm()

    def unwatch(self) -> None:
        """Back to the plain close at expiry."""
        self._on_due = self._on_expired = None
        self.arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def check(self, token: str) -> Identity:
        """Run the hooks that admitted the connection with ``credential(ws)`` returning
        ``token``; the new ``Identity`` for the same user. Nothing else is changed, and
        on a refusal what the hooks set on ``ws.state`` is undone (its attributes are
        put back as they were).

        Raises:
            RefreshRefused: a hook refused or failed, none returned an ``Identity``, it
                has expired already, it has no expiry where the connection's had one, or
                the connection's credential expired meanwhile (4001); it is another
                user's (4003).
        """
        ws = self._ws
        if self.ended:
            raise RefreshRefused(CloseCode.UNAUTHORIZED, EXPIRED)
        state = vars(ws.state)
        before = dict(state)
        presented = _presented.set((ws, token))
        try:
            identity = await run_hooks(ws, self.hooks)
            current = ws.identity
            if identity is None:
                raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "no identity")
            if identity.expired():
                raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "expired already")
            if current is None or identity.user != current.user:
                raise RefreshRefused(CloseCode.FORBIDDEN, OTHER_USER, f"user {identity.user!r}")
            if identity.expires_at is None and current.expires_at is not None:
                # An expiring credential cannot be traded for one that lasts for ever.
                raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "no expiry")
            if self.ended:
                raise RefreshRefused(CloseCode.UNAUTHORIZED, EXPIRED)
        except BaseException as exc:
            # Guards read ws.state: a refused credential must leave nothing there.
            state.clear()
            state.update(before)
            if isinstance(exc, HTTPError):
                raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, exc.detail) from None
            if isinstance(exc, Exception) and not isinstance(exc, RefreshRefused):
                # A hook that fails is a refusal, not a crash of the connection.
                _hook_failures.error("an auth hook failed on a refresh of %s: %r", ws.path, exc)
                raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "hook failed") from None
            raise
        finally:
            _presented.reset(presented)
        return identity

    def renew(self, identity: Identity) -> None:
        """Make ``identity`` (from ``check``) the connection's, and restart the timer.

        Raises:
            RefreshRefused: the credential expired before (4001 "credential expired").
        """
        if self.ended:
            raise RefreshRefused(CloseCode.UNAUTHORIZED, EXPIRED)
        self._ws.identity = identity
        self.arm()

    def expire(self) -> None:
        """End the lease now: its credential has expired (the timer calls it; so may
        whoever notices first that it is late). The watcher's ``on_expired``, or the
        plain close. Once only."""
        self.cancel()
        ws = self._ws
        if self.ended or ws.closed:
            return
        self.ended = True  # before anything else: nothing may renew or be served now
        access.info(
            "websocket %s: %s, closing",
            ws.path,
            EXPIRED,
            extra={"event": "expired", "path": ws.path, "client": ws.client_address},
        )
        if self._on_expired is not None:
            self._on_expired()
        else:
            ws.fail(CloseCode.UNAUTHORIZED, EXPIRED)

    def _due(self, expires: float) -> None:
        loop = asyncio.get_running_loop()
        left = expires - time.time()
        self._handle = loop.call_at(loop.time() + left, self.expire)
        if self._on_due is not None:
            self._on_due(expires, max(left, 0.0))

    def _closed(self, _conn: ServerConnection) -> None:
        self.cancel()
        self._on_due = self._on_expired = None


async def refresh(ws: WebSocket, token: str) -> Identity:
    """Present a new credential for ``ws`` from a handler: the hooks that admitted it run
    again with ``credential(ws)`` returning ``token``; an ``Identity`` for the same user
    replaces ``ws.identity`` and restarts its expiry timer.

    The message layer does this for ``rpc.refresh``; a plain handler calls it with a
    token its client sent. With a managed connection whose meta comes from the
    Identity, follow with ``await conn.set_meta(identity.meta)``.

    Examples:
        ```python
        try:
            identity = await refresh(ws, token)
        except RefreshRefused as exc:
            await ws.close(exc.code, exc.reason)
        ```

    Raises:
        RefreshRefused: not accepted (its ``code`` and ``reason`` say how to close);
            ``ws.identity``, its expiry and ``ws.state`` are as they were.
    """
    lease = ws.lease
    if lease is None:
        raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "not admitted with an Identity")
    identity = await lease.check(token)
    lease.renew(identity)
    return identity
