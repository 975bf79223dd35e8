"""Subscribing a connection from the server's side, wherever it is connected:
``RPC.subscribe_connection`` and ``unsubscribe_connection``, and the same commands from
other nodes and processes (an emitter, the HTTP API) on the endpoint's control topic
``messages:<name> control``.
"""

from __future__ import annotations

import asyncio
import logging

from .._util import TaskSet, Throttle
from ..envelope import Envelope
from ..errors import BrokerUnavailable
from ..manager import Connection, WebSocketManager
from . import channels
from .codec import json_bytes, json_loads
from .pushes import Pushes

__all__ = ["ConnectionControl", "control_topic"]

logger = logging.getLogger("gobstopper.rpc")


def control_topic(endpoint: str) -> str:
    """The topic of an endpoint's subscribe and unsubscribe commands."""
    return f"messages:{endpoint} control"


class ConnectionControl:
    """Server-side subscriptions of one endpoint's connections.

    Args:
        manager: the endpoint's manager (its cluster carries commands to other nodes).
        name: the endpoint's name.
        pushes: the endpoint's pushes (which subscribe and unsubscribe).
        connections: the endpoint's connections on this node, by id.
    """

    def __init__(
        self,
        manager: WebSocketManager,
        name: str,
        pushes: Pushes,
        connections: dict[str, Connection],
    ) -> None:
        self._manager = manager
        self._pushes = pushes
        self._connections = connections
        self._topic = control_topic(name)
        self._background = TaskSet(logger, "control command", throttle=True)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, commands waiting
        self._throttle = Throttle(logger)
        manager.cluster.on_topic(self._topic, self._on_command)

    async def command(self, conn_id: str, op: str, channel: str) -> bool:
        """Run ``op`` (``subscribe`` or ``unsubscribe``) of ``channel`` for ``conn_id``
        here, or hand it to the node that has the connection.

        Returns:
            True if run here or handed over; False if no node has the connection.

        Raises:
            ValueError: not a channel name or pattern.
            BrokerUnavailable: it is not here and the broker cannot be reached.
        """
        if not channels.valid_pattern(channel):
            raise ValueError(f"not a channel name or pattern: {channel!r}")
        if conn_id in self._connections:
            await self._run(conn_id, op, channel)
            return True
        if not self._manager.clustered:
            return False
        payload = json_bytes({"op": op, "channel": channel})
        remote = await self._manager.cluster.publish_topic(self._topic, payload, to=conn_id)
        if remote.error is not None:
            health = self._manager.broker_health()
            raise BrokerUnavailable(health.url if health else "", remote.error)
        return remote.published

    async def _run(self, conn_id: str, op: str, channel: str) -> None:
        # One connection's commands run one after the other, in the order they came: an
        # unsubscribe right after a subscribe waits for the subscription (which may be
        # reading history) rather than finding nothing to undo.
        lock, waiting = self._locks.get(conn_id, (asyncio.Lock(), 0))
        self._locks[conn_id] = (lock, waiting + 1)
        try:
            async with lock:
                await self._apply(conn_id, op, channel)
        finally:
            lock, waiting = self._locks[conn_id]
            if waiting == 1:
                del self._locks[conn_id]  # none queued behind: forgotten
            else:
                self._locks[conn_id] = (lock, waiting - 1)

    async def _apply(self, conn_id: str, op: str, channel: str) -> None:
        conn = self._connections.get(conn_id)
        if conn is None:
            return
        if op == "subscribe":
            try:
                _, finish = await self._pushes.subscribe(conn, channel)
            except BrokerUnavailable as exc:
                logger.warning(
                    "subscribing %s to %r: history unavailable: %s", conn_id, channel, exc
                )
                return
            if finish is not None:
                finish()
        elif op == "unsubscribe":
            await self._pushes.unsubscribe(conn, channel)

    def _on_command(self, note: Envelope) -> None:
        """A subscribe or unsubscribe command from another node or process."""
        try:
            command = json_loads(note.payload)
            op, channel = command["op"], command["channel"]
            if op not in ("subscribe", "unsubscribe") or not channels.valid_pattern(channel):
                raise ValueError(f"{op!r} {channel!r}")
        except Exception as exc:  # whatever another process sent, this node goes on
            self._throttle.warning("skipped a control command: %s", exc)
            return
        self._background.spawn(self._run(note.target or "", op, channel))
