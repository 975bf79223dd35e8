"""Pushes: channel publications (``rpc.message``) and named events (``rpc.event``) sent
to an endpoint's connections, on this node and on the others.

A push is encoded once per encoding the endpoint offers, before anyone gets it, so that
what one encoding cannot carry, or a message over the size limit, fails for everyone
(``TypeError``, ``MessageTooBig``) rather than for some subscribers. This node's
connections get it through one ``manager.deliver`` call, which never awaits a slow
client; the other nodes get the JSON form once through ``manager.publish_topic``, in an
envelope naming the channel, the room or the target, and deliver it to theirs
(``on_topic``), making the msgpack form only if one of theirs needs it.

A publication travels only to the nodes with subscribers: ``subscribe`` puts every
connection with a subscription in ``SUBSCRIBERS_ROOM``, and each node matches the
channel against its own subscriptions. Each channel or pattern also has a room
(``CHANNEL_ROOM + name``), whose cluster-wide presence says who subscribes.
"""

from __future__ import annotations

import contextlib
import logging
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ..delivery import Delivery, Push
from ..envelope import Envelope
from ..errors import MessageTooBig
from ..manager import Connection, WebSocketManager
from . import channels, protocol
from .codec import MSGPACK, json_bytes, json_loads
from .subscriptions import SubscriptionIndex

__all__ = ["CHANNEL_ROOM", "SUBSCRIBERS_ROOM", "Pushes"]

logger = logging.getLogger("gobstopper.rpc")

#: The room of every connection with a subscription: channel messages travel to the nodes
#: that have members in it. (A space: no channel's room can have this name.)
SUBSCRIBERS_ROOM = "channel subscribers"

#: The room a channel's (or pattern's) subscribers join: presence comes with it.
CHANNEL_ROOM = "channel:"


class Pushes:
    """Publish and emit for one endpoint, and the subscriptions that route publications.

    Args:
        manager: carries the pushes to this node's connections and to the other nodes.
        topic: the manager topic this endpoint's pushes travel on between nodes.
        encodings: the encodings the endpoint offers (a push is encoded for each).
        subscriptions: the endpoint's subscription index.
        connections: the endpoint's connections on this node, by id.
    """

    def __init__(
        self,
        manager: WebSocketManager,
        topic: str,
        encodings: tuple[str, ...],
        subscriptions: SubscriptionIndex[Connection],
        connections: dict[str, Connection],
    ) -> None:
        self.manager = manager
        self.topic = topic
        self._msgpack = "msgpack" in encodings
        self._subscriptions = subscriptions
        self._connections = connections
        manager.on_topic(topic, self.on_topic)

    async def subscribe(self, conn: Connection, channel: str) -> None:
        """Subscribe ``conn`` to a channel or pattern (checked by the caller), and put it
        in the rooms that bring it the channel's messages from the other nodes."""
        if not self._subscriptions.subscribe(conn, channel):
            return
        with contextlib.suppress(ValueError):  # the connection may have gone meanwhile
            if self._subscriptions.count(conn) == 1:
                await conn.join(SUBSCRIBERS_ROOM)
            await conn.join(CHANNEL_ROOM + channel)  # presence, cluster-wide

    async def unsubscribe(self, conn: Connection, channel: str) -> None:
        """Undo ``subscribe`` (nothing if ``conn`` does not hold ``channel``)."""
        if self._subscriptions.unsubscribe(conn, channel):
            await conn.leave(CHANNEL_ROOM + channel)
            if not self._subscriptions.count(conn):
                await conn.leave(SUBSCRIBERS_ROOM)

    async def publish(
        self,
        channel: str,
        data: Any,
        ids: frozenset[str],
        predicate: Callable[[Connection], bool] | None,
        clustered: bool,
    ) -> Delivery:
        """``RPC.publish``: ``data`` to every subscriber of ``channel`` but ``ids``, here
        and (``clustered``) on every other node."""
        if not channels.valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        raw, push = self.encode(protocol.channel_message(channel, data))
        targets = self._subscriptions.targets(channel)
        sent = self.manager.deliver(targets, push, ids, predicate)
        if not clustered:
            return Delivery(sent)
        # Every node with a subscriber (which matches patterns itself), and no other.
        remote = await self.manager.publish_topic(
            self.topic, raw, room=SUBSCRIBERS_ROOM, channel=channel, exclude=ids
        )
        return Delivery.of(sent, (remote.published, remote.error))

    async def emit(
        self,
        event: str,
        data: Any,
        sender: str | None,
        room: str | None,
        to: str | None,
        ids: frozenset[str],
        predicate: Callable[[Connection], bool] | None,
        clustered: bool,
    ) -> Delivery:
        """``RPC.emit``: the named event to one connection (``to``), a room or everyone,
        but ``ids``, here and (``clustered``) on the other nodes concerned."""
        raw, push = self.encode(protocol.event_push(event, data, sender))
        sent = self.manager.deliver(self.event_targets(room, to), push, ids, predicate)
        if not clustered or (to is not None and (sent or to in self.manager)):
            return Delivery(sent)  # ``to`` is here (or was refused here): nobody else has it
        # Only the nodes concerned: those with members in the room, or the target's.
        remote = await self.manager.publish_topic(self.topic, raw, room=room, to=to, exclude=ids)
        return Delivery.of(sent, (remote.published, remote.error))

    def encode(self, message: dict[str, Any]) -> tuple[bytes, Push]:
        """``message`` as JSON bytes (what travels between nodes) and as the ``Push`` for
        this node, with its msgpack form when msgpack is offered.

        Raises:
            TypeError: an offered encoding cannot carry it.
            MessageTooBig: one of its forms is over the message limit.
        """
        raw = json_bytes(message)
        packed = typing.cast(bytes, MSGPACK.encode(message)) if self._msgpack else None
        limit = self.manager.config.max_message_bytes
        size = max(len(raw), len(packed or b""))
        if size > limit:
            raise MessageTooBig(size, limit)
        return raw, Push(raw.decode(), len(raw), packed)

    def event_targets(self, room: str | None, to: str | None) -> Iterable[Connection]:
        """This node's connections of the endpoint an event is for: ``to``, the room's
        members, or all."""
        conns = self._connections
        if to is not None:
            conn = conns.get(to)
            return () if conn is None else (conn,)
        if room is None:
            return tuple(conns.values())
        return [c for c in map(conns.get, self.manager.members(room)) if c is not None]

    def on_topic(self, note: Envelope) -> None:
        """Another node published a channel message or an event: deliver to ours."""
        raw = note.payload
        push = Push(raw.decode(), len(raw), _lazy_msgpack(raw))
        conns: Iterable[Connection]
        if note.channel is not None:
            conns = self._subscriptions.targets(note.channel)
        else:
            conns = self.event_targets(note.room, note.target)
        self.manager.deliver(conns, push, frozenset(note.exclude))


def _lazy_msgpack(raw: bytes) -> Callable[[], bytes | None]:
    """The msgpack form of a JSON push, made when a msgpack subscriber first needs it."""

    def pack() -> bytes | None:
        try:
            return typing.cast(bytes, MSGPACK.encode(json_loads(raw)))
        except TypeError as exc:
            logger.warning("a push msgpack cannot carry was not sent: %s", exc)
            return None

    return pack
