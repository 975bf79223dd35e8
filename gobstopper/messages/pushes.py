"""Pushes: channel publications (``rpc.message``) and named events (``rpc.event``) sent
to an endpoint's connections, on this node and on the others.

A push is encoded once per encoding the endpoint offers, before anyone gets it, so that
what one encoding cannot carry, or a message over the size limit, fails for everyone
(``TypeError``, ``MessageTooBig``) rather than for some subscribers. This node's
connections get it through one ``manager.deliver`` call, which never awaits a slow
client; the other nodes get the JSON form once through ``manager.cluster.publish_topic``, in an
envelope naming the channel, the room or the target, and deliver it to theirs
(``on_topic``), making the msgpack form only if one of theirs needs it.

A publication travels only to the nodes with subscribers: ``subscribe`` puts every
connection with a subscription in ``SUBSCRIBERS_ROOM``, and each node matches the
channel against its own subscriptions. Each channel or pattern also has a room
(``CHANNEL_ROOM + name``), whose cluster-wide presence says who subscribes. With a
broker that matches patterns itself (NATS), that room also subscribes its node to the
pattern at the broker, and a publication goes only to the nodes whose patterns match
it (``cluster.route``), not to every node with a subscriber.
"""

from __future__ import annotations

import contextlib
import logging
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ..delivery import Delivery, Push
from ..envelope import Envelope
from ..errors import BrokerUnavailable, CloseCode, MessageTooBig
from ..history.base import Position
from ..manager import Connection, WebSocketManager
from . import channels, protocol
from .codec import MSGPACK, json_bytes, json_loads
from .history import POSITION_ROOM, ChannelHistory, HistoryPolicy
from .protocol import INVALID_PARAMS, RPCError
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
        #: Which channels keep history, and subscriptions resuming from a position.
        self.history = ChannelHistory(manager, topic)
        self._binary = _lazy_msgpack if self._msgpack else None
        manager.cluster.on_topic(topic, self.on_topic)
        manager.cluster.route_rooms(CHANNEL_ROOM, channels.valid_pattern)

    async def subscribe(
        self, conn: Connection, channel: str, since: Position | None = None
    ) -> tuple[dict[str, Any], Callable[[], None] | None]:
        """Subscribe ``conn`` to a channel or pattern (checked by the caller), and put it
        in the rooms that bring it the channel's messages from the other nodes. A
        channel with history starts at a position, given back: after ``since`` when
        given (and then whether it was followed: ``recovered``), else from now.

        Returns:
            What the answer adds, and for a channel with history a function to call
            once the answer is queued (``ChannelHistory.resume``).

        Raises:
            RPCError: ``since`` for a pattern or a channel without history.
            BrokerUnavailable: the history store cannot be read; not subscribed.
        """
        policy = None if channels.is_pattern(channel) else self.history.policy(channel)
        if policy is None:
            if since is not None:
                why = f"{channel!r} keeps no history to resume from"
                raise RPCError(INVALID_PARAMS, "Invalid params", why)
            if self._subscriptions.subscribe(conn, channel):
                await self._join(conn, channel)
            return {}, None
        history = self.history
        if channel in self._subscriptions.subscriptions(conn) or history.resuming_on(conn, channel):
            # Subscribed already: this connection gets the channel live. A ``since`` is
            # followed only if it is where the channel stands: nothing is replayed to one
            # connection twice.
            if since is None:
                return {}, None
            window = await self.manager.cluster.history.read(history.stream(channel), limit=0)
            now = window.position
            return {"offset": now.offset, "epoch": now.epoch, "recovered": since == now}, None
        if not self._subscriptions.targets(channel) and not history.resuming_channel(channel):
            # Nobody here followed the channel: the offsets this node saw last are stale
            # (it may not have been listening since), not a sign of a gap.
            history.unseen(channel)
        try:
            position, recovered, finish = await history.resume(
                conn,
                channel,
                since,
                lambda: self._join(conn, channel),
                lambda: self._subscriptions.subscribe(conn, channel),
                self._binary,
            )
        except BrokerUnavailable:
            await self._leave(conn, channel)
            raise
        answer: dict[str, Any] = {"offset": position.offset, "epoch": position.epoch}
        if recovered is not None:
            answer["recovered"] = recovered
        return answer, finish

    async def _join(self, conn: Connection, channel: str) -> None:
        """The rooms a subscription needs: the one publications travel to (joined once
        per connection) and the channel's own (presence, cluster-wide)."""
        with contextlib.suppress(ValueError):  # the connection may have gone meanwhile
            await conn.join(SUBSCRIBERS_ROOM)
            await conn.join(CHANNEL_ROOM + channel)

    async def unsubscribe(self, conn: Connection, channel: str) -> None:
        """Undo ``subscribe`` (nothing if ``conn`` does not hold ``channel``)."""
        if self._subscriptions.unsubscribe(conn, channel):
            await self._leave(conn, channel)

    async def _leave(self, conn: Connection, channel: str) -> None:
        """Undo ``_join`` (the room publications travel to only with nothing else left)."""
        with contextlib.suppress(ValueError):  # the connection may have gone meanwhile
            await conn.leave(CHANNEL_ROOM + channel)
            if not self._subscriptions.count(conn) and not self.history.resuming(conn):
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
        policy = self.history.policy(channel)
        if policy is not None:
            if predicate is not None or clustered != self.manager.clustered:
                # Kept publications are replayed to any subscriber that resumes, and go
                # through the store to every node: neither can honour these.
                raise ValueError(f"{channel!r} keeps history: no predicate, no local=True")
            return await self._publish_kept(channel, data, ids, policy)
        raw, push = self.encode(protocol.channel_message(channel, data))
        targets = self._subscriptions.targets(channel)
        sent = self.manager.deliver(targets, push, ids, predicate)
        if not clustered:
            return Delivery(sent)
        # Every node with a subscriber (which matches patterns itself), and no other.
        cluster = self.manager.cluster
        remote = await cluster.publish_topic(
            self.topic,
            raw,
            room=SUBSCRIBERS_ROOM,
            channel=channel,
            exclude=ids,
            route=cluster.route(channel),
        )
        return Delivery.of(sent, (remote.published, remote.error))

    async def _publish_kept(
        self, channel: str, data: Any, ids: frozenset[str], policy: HistoryPolicy
    ) -> Delivery:
        """A publication to a channel with history: kept, positioned, then delivered (here
        at once without other nodes; with them, everywhere as it comes back)."""
        # The push is made once the position is known; msgpack is checked here, so that
        # what it cannot carry fails for the publisher, not for some subscribers.
        raw, _ = self._encoded(protocol.channel_message(channel, data), POSITION_ROOM)
        position, through_broker = await self.manager.cluster.publish_topic_with_history(
            self.topic,
            raw,
            self.history.stream(channel),
            policy.size,
            policy.ttl,
            room=SUBSCRIBERS_ROOM,
            channel=channel,
            exclude=ids,
            route=self.manager.cluster.route(channel),
        )
        if through_broker:
            return Delivery(0, published=True)
        assert position is not None
        return Delivery(self._deliver_kept(channel, raw, position, ids))

    def _deliver_kept(
        self, channel: str, raw: bytes, position: Position, exclude: frozenset[str]
    ) -> int:
        push = self.history.push(raw, position, self._binary)
        targets = self._subscriptions.targets(channel)
        return self.history.deliver(channel, targets, push, position.offset, exclude, None)

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
        remote = await self.manager.cluster.publish_topic(
            self.topic, raw, room=room, to=to, exclude=ids
        )
        return Delivery.of(sent, (remote.published, remote.error))

    def encode(self, message: dict[str, Any]) -> tuple[bytes, Push]:
        """``message`` as JSON bytes (what travels between nodes) and as the ``Push`` for
        this node, with its msgpack form when msgpack is offered.

        Raises:
            TypeError: an offered encoding cannot carry it.
            MessageTooBig: one of its forms is over the message limit.
        """
        # ``_encoded`` without a position to make room for: every publication comes here.
        raw = json_bytes(message)
        size = len(raw)
        packed = None
        if self._msgpack:
            packed = typing.cast(bytes, MSGPACK.encode(message))
            size = max(size, len(packed))
        limit = self.manager.config.max_message_bytes
        if size > limit:
            raise MessageTooBig(size, limit)
        return raw, Push(raw.decode(), len(raw), packed)

    def _encoded(self, message: dict[str, Any], spare: int) -> tuple[bytes, bytes | None]:
        """``message`` as JSON and, when msgpack is offered, as msgpack, both checked
        against the message limit with ``spare`` bytes to grow by (a position)."""
        raw = json_bytes(message)
        packed = typing.cast(bytes, MSGPACK.encode(message)) if self._msgpack else None
        limit = self.manager.config.max_message_bytes
        size = max(len(raw), len(packed or b"")) + spare
        if size > limit:
            raise MessageTooBig(size, limit)
        return raw, packed

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

    def _arrived_kept(self, channel: str, raw: bytes, position: Position, note: Envelope) -> None:
        """A publication with a position, from the broker (this node's own included)."""
        history = self.history
        subscribers = self._subscriptions.targets(channel)
        if not subscribers and not history.resuming_channel(channel):
            history.unseen(channel)
            return
        if history.gap(channel, position):
            # This node missed publications (its link to the broker dropped): its
            # subscribers would see a silent gap. Close them; their clients resume from
            # their positions and get the missing ones from the store.
            logger.warning(
                "missed publications of %r before offset %d: closing its subscribers here"
                " so that they resume",
                channel,
                position.offset,
            )
            for conn in history.failing(channel, subscribers):
                conn.ws.fail(CloseCode.SERVICE_RESTART, "missed publications: resume")
            return
        self._deliver_kept(channel, raw, position, frozenset(note.exclude))

    def on_topic(self, note: Envelope) -> None:
        """A channel message or an event from another node (or, with a position, from
        any node, this one included): deliver to ours."""
        raw = note.payload
        if note.offset is not None and note.channel is not None and note.epoch is not None:
            self._arrived_kept(note.channel, raw, Position(note.offset, note.epoch), note)
            return
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
