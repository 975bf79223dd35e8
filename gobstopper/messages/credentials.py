"""Expiring credentials on the message layer: ``rpc.refresh_due`` before the expiry,
the built-in ``rpc.refresh``, and the ``rpc.close`` event before every close the client
must understand (under RSGI the close frame carries no code).

Everything a connection is sent here goes through its outbox, so it is ordered with the
pushes queued before it. At the expiry, or once a refused refresh is answered, the
connection ends at once (``Peer.end``): nothing more of it is dispatched, the event is
the last thing queued for it, and the close waits at most ``CLOSE_FLUSH`` seconds for
the queue to go out, so the event reaches the client before the close.
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

__all__ = ["REFRESH_LIMIT", "refresh", "watch"]

logger = logging.getLogger("gobstopper.rpc")

#: ``rpc.refresh`` calls per second one connection may make (each runs the auth hooks).
REFRESH_LIMIT = (3, 1.0)


def _queue(peer: Peer, message: dict[str, Any]) -> bool:
    """Queue ``message`` for ``peer`` behind its pushes; False if it was not queued."""
    frame = peer.codec.encode(message)
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    return peer.conn.outbox.put(frame, size)


def watch(peer: Peer, tasks: TaskSet) -> None:
    """Push ``rpc.refresh_due`` before ``peer``'s credential expires (once per expiry),
    and at the expiry end the connection: ``rpc.close``, then the close with 4001 (a
    no-op without a ``Lease``)."""
    lease = peer.ws.lease
    if lease is None:
        return
    told: list[float] = []  # the expiry last announced

    def due(expires_at: float, left: float) -> None:
        if told and told[0] == expires_at:
            # A refresh that gave the same expiry: asking again at once would only start
            # a loop of refreshes. The expiry itself still comes.
            return
        told[:] = [expires_at]
        params = {"expires_at": expires_at, "in": round(left, 3)}
        _queue(peer, protocol.notification(protocol.REFRESH_DUE, params))

    def expired() -> None:
        peer.end(CloseCode.UNAUTHORIZED, EXPIRED)  # first: nothing is served from now on
        tasks.spawn(peer.close_ended(CloseCode.UNAUTHORIZED, EXPIRED))

    lease.watch(due, expired)


async def refresh(peer: Peer, token: str) -> dict[str, Any]:
    """``rpc.refresh``: check ``token`` with the hooks that admitted the connection.

    Accepted: the connection's Identity (and its meta, when the Identity's changed) is
    replaced and the timers restart; answers ``{"user", "expires_at"}``. Refused: the
    error ``UNAUTHORIZED``, then the ``rpc.close`` event, then the close (4001, or 4003
    for another user's credential). After the expiry (the hooks took too long) it is
    refused too, and the expiry's close goes on.
    """
    ws = peer.ws
    lease = ws.lease
    try:
        if lease is None:
            raise RefreshRefused(CloseCode.UNAUTHORIZED, REFUSED, "no identity")
        identity = await lease.check(token)
        current = ws.identity
        if current is not None and dict(identity.meta) != dict(current.meta):
            # Checked there before anything changes: a meta that cannot be shown is an
            # internal error, and the connection keeps its credential.
            await peer.conn.set_meta(identity.meta)
        lease.renew(identity)
    except RefreshRefused as exc:
        logger.info("%s on %s: %s", exc.reason, ws.path, exc.detail or "-")
        code, reason = exc.code, exc.reason
        if not peer.ended:
            # The error answer, the event, then the close, in that order on the wire.
            peer.answer_in_queue = True
            peer.after_answer.append(lambda: peer.end(code, reason))
            peer.closing = (code, reason)
        raise RPCError(UNAUTHORIZED, "Unauthorized", reason) from None
    return {"user": identity.user, "expires_at": identity.expires_at}
