"""Expiring credentials on the message layer: ``rpc.refresh_due`` before the expiry,
the built-in ``rpc.refresh``, and the ``rpc.close`` event before every close the client
must understand (under RSGI the close frame carries no code).

Everything a connection is sent here goes through its outbox, so it is ordered with the
pushes queued before it; a close waits for the outbox to be flushed (``ws.close`` does
that for a managed connection), so the event reaches the client before the close.
"""

from __future__ import annotations

import logging
from typing import Any

from .._util import TaskSet
from ..auth import EXPIRED, REFUSED, RefreshRefused
from ..errors import CloseCode
from . import protocol
from .dispatch import Peer
from .protocol import UNAUTHORIZED, RPCError

__all__ = ["REFRESH_LIMIT", "closing_event", "refresh", "watch"]

logger = logging.getLogger("gobstopper.rpc")

#: ``rpc.refresh`` calls per second one connection may make (each runs the auth hooks).
REFRESH_LIMIT = (3, 1.0)


def _queue(peer: Peer, message: dict[str, Any]) -> bool:
    """Queue ``message`` for ``peer`` behind its pushes; False if it was not queued."""
    frame = peer.codec.encode(message)
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    return peer.conn.outbox.put(frame, size)


def closing_event(peer: Peer, code: int, reason: str) -> None:
    """Queue the ``rpc.close`` event that tells the client why it is about to be closed."""
    data = {"code": code, "reason": reason}
    _queue(peer, protocol.event_push(protocol.CLOSING_EVENT, data, None))


def watch(peer: Peer, tasks: TaskSet) -> None:
    """Push ``rpc.refresh_due`` before ``peer``'s credential expires, and at the expiry
    send ``rpc.close`` then close with 4001 (a no-op without a ``Lease``)."""
    lease = peer.ws.lease
    if lease is None:
        return

    def due(expires_at: float, left: float) -> None:
        params = {"expires_at": expires_at, "in": round(left, 3)}
        _queue(peer, protocol.notification(protocol.REFRESH_DUE, params))

    def expired() -> None:
        closing_event(peer, CloseCode.UNAUTHORIZED, EXPIRED)
        # ws.close flushes the outbox first: the event goes out before the close frame.
        tasks.spawn(peer.ws.close(CloseCode.UNAUTHORIZED, EXPIRED))

    lease.watch(due, expired)


async def refresh(peer: Peer, token: str) -> dict[str, Any]:
    """``rpc.refresh``: check ``token`` with the hooks that admitted the connection.

    Accepted: the connection's Identity (and its meta, when the Identity's changed) is
    replaced and the timers restart; answers ``{"user", "expires_at"}``. Refused: the
    error ``UNAUTHORIZED``, then the ``rpc.close`` event, then the close (4001, or 4003
    for another user's credential).
    """
    ws = peer.ws
    lease = ws.lease
    try:
        if lease is None:
            raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "no identity")
        identity = await lease.check(token)
    except RefreshRefused as exc:
        logger.info("%s on %s: %s", exc.reason, ws.path, exc.detail or "-")
        # The error answer, the event, then the close, in that order on the wire.
        code, reason = exc.code, exc.reason
        peer.answer_in_queue = True
        peer.after_answer.append(lambda: closing_event(peer, code, reason))
        peer.closing = (code, reason)
        raise RPCError(UNAUTHORIZED, "Unauthorized", reason) from None
    current = ws.identity
    if current is not None and dict(identity.meta) != dict(current.meta):
        # Checked there before anything changes: a meta that cannot be shown is an
        # internal error, and the connection keeps its credential.
        await peer.conn.set_meta(identity.meta)
    lease.renew(identity)
    return {"user": identity.user, "expires_at": identity.expires_at}
