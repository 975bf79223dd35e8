"""This node's side of a cluster: what crosses to the other nodes, and presence.

The manager keeps rooms and delivers locally; this module is everything it does through
the broker, so that the manager reads as local logic. Every message between nodes is
one ``Envelope`` (``envelope.py``) on one of three kinds of broker channel:

- ``all``: every node (broadcasts to everyone, events for everyone);
- ``room:<name>``: the nodes with members in that room (a node subscribes on the
  room's first local member and unsubscribes once it has none);
- ``node:<node id>``: one node (a direct send to a connection it has).

A broker that matches channel patterns itself (``Broker.wildcards``, NATS) also carries
the message layer's channels: ``chan:<channel>`` for a publication, and ``chan:<pattern>``
subscribed while a room that stands for that pattern (``route_rooms``) has members here,
so that a publication reaches only the nodes whose subscribers match it.

Presence records which node has each connection (key ``conns``) and each room's members
(key ``room:<name>``), so that ``send_to`` finds a connection's node and
``cluster_members`` lists a room across nodes.

With no broker, or one no other node can share (a private in-memory hub), nothing here
costs anything: ``clustered`` is False and the manager stays local.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from . import envelope
from ._util import TaskSet, Throttle
from .brokers.base import Broker, BrokerHealth
from .delivery import Delivery
from .envelope import Envelope, EnvelopeError
from .errors import BrokerUnavailable
from .history import HistoryStore, MemoryHistory, Position
from .presence import member_id

__all__ = ["ALL", "CONNS", "Cluster", "Published", "Receiver", "TopicHandler", "room_channel"]

logger = logging.getLogger("gobstopper.broker")

ALL = "all"
CONNS = "conns"  # the presence key of every connection

#: What a layer above the manager gets for each message of its topic from another node.
TopicHandler = Callable[[Envelope], None]
#: What the manager does with a message from another node: ``(channel, envelope, payload)``,
#: the payload decoded (text or bytes) and within the size limit.
Receiver = Callable[[str, Envelope, "str | bytes"], None]
#: The outcome of a publication: ``(published, error)``.
Published = tuple[bool, "str | None"]


def room_channel(name: str) -> str:
    """The broker channel (and presence key) of room ``name``."""
    return "room:" + name


class Cluster:
    """The broker side of one manager.

    Args:
        broker: how this node reaches the others; None: this process only.
        max_message_bytes: messages from other nodes over it are skipped.
        receive: delivers a message from another node to this node's members.
        occupied: whether a room has members on this node now.
    """

    def __init__(
        self,
        broker: Broker | None,
        max_message_bytes: int,
        receive: Receiver,
        occupied: Callable[[str], bool],
    ) -> None:
        self.broker = broker
        self._limit = max_message_bytes
        self._receive = receive
        self._occupied = occupied
        self._started = False
        self._clustered = False
        self.node = ""  # the broker's node id, once started
        self._own = b"\x00"  # how this node's envelopes begin, once started
        self._topics: dict[str, TopicHandler] = {}
        self._advertised: list[tuple[str, str]] = []  # presence entries of this node
        self._routed: str | None = None  # rooms named so follow a channel pattern
        self._routable: Callable[[str], bool] = bool
        self._own_history: MemoryHistory | None = None
        self._throttle = Throttle(logger)
        self._background = TaskSet(logger, "broker operation", throttle=True)

    @property
    def clustered(self) -> bool:
        """Whether other nodes share the broker (then predicates cannot travel)."""
        return self._clustered

    def advertise(self, key: str, member: str) -> None:
        """Record ``member`` under presence key ``key`` for as long as this node lives,
        so that other processes can read what this node offers (e.g. which channels
        keep history: an emitter publishing to one must append to its history). The
        entry reads ``<node id> <member>``: each node's own, gone with it."""
        self._advertised.append((key, member))
        if self._clustered and self.broker is not None:
            self.broker.presence_add(key, f"{self.node} {member}")

    @property
    def wildcards(self) -> bool:
        """Whether the broker routes channel patterns (see ``route_rooms``)."""
        return self.broker is not None and self.broker.wildcards and not self.broker.alone

    def route_rooms(self, prefix: str, routable: Callable[[str], bool]) -> None:
        """With a broker that routes patterns, a room named ``prefix + pattern`` (a
        pattern ``routable`` accepts) also subscribes this node to ``chan:<pattern>``
        while it has members here."""
        self._routed = prefix
        self._routable = routable

    def route(self, channel: str) -> str | None:
        """The broker channel of a publication to ``channel`` (a message-layer channel),
        if the broker routes them; else None."""
        return "chan:" + channel if self.wildcards else None

    def _followed(self, room: str) -> str | None:
        if self._routed is None or not room.startswith(self._routed) or not self.wildcards:
            return None
        pattern = room[len(self._routed) :]
        # A room an application named so itself follows nothing: only patterns route.
        return "chan:" + pattern if self._routable(pattern) else None

    async def _subscribe_room(self, broker: Broker, room: str) -> None:
        await broker.subscribe(room_channel(room))
        followed = self._followed(room)
        if followed is not None:
            await broker.subscribe(followed)

    def health(self) -> BrokerHealth | None:
        return None if self.broker is None else self.broker.health()

    async def start(self, members: Callable[[], Iterable[tuple[str, str, Iterable[str]]]]) -> None:
        """Start the broker; with other nodes to reach, subscribe and record the presence
        of the connections already here (``members()``: ``(connection id, its presence
        entry, its rooms)``,
        asked once this node counts as clustered, so that none added meanwhile is
        missed)."""
        broker = self.broker
        if broker is None or self._started:
            return
        await broker.start(self._on_message)
        self.node = broker.node_id
        self._own = envelope.origin_marker(self.node)
        self._started = True
        if broker.alone:
            return  # nobody else to reach: broadcast stays in this process, at no cost
        await broker.subscribe(ALL)
        await broker.subscribe("node:" + broker.node_id)
        self._clustered = True
        for key, member in self._advertised:
            broker.presence_add(key, f"{self.node} {member}")
        for conn_id, entry, rooms in members():
            broker.presence_add(CONNS, conn_id)
            for room in rooms:
                await self._subscribe_room(broker, room)
                broker.presence_add(room_channel(room), entry)

    async def stop(self) -> None:
        """Withdraw this node and stop the broker."""
        if self.broker is None or not self._started:
            return
        self._started = self._clustered = False
        await self._background.wait()
        await self.broker.stop()

    # -- presence and room channels ------------------------------------------------------------

    def added(self, conn_id: str) -> None:
        if self._clustered and self.broker is not None:
            self.broker.presence_add(CONNS, conn_id)

    def removed(self, conn_id: str) -> None:
        if self._clustered and self.broker is not None:
            self.broker.presence_remove(CONNS, conn_id)

    async def joined(self, room: str, first: bool, current: Callable[[], str | None]) -> None:
        """A connection joined ``room`` (``first``: the room's first member here);
        ``current()`` is its presence entry once the subscription is confirmed, or None
        if it is no longer a member."""
        broker = self.broker
        if not self._clustered or broker is None:
            return
        if first:
            # Returns once the broker confirms: from then on, nothing published to the
            # room by another node is missed here.
            await self._subscribe_room(broker, room)
        entry = current()  # it may have left (or changed its meta) while we waited
        if entry is not None:
            broker.presence_add(room_channel(room), entry)

    async def left(self, room: str, entry: str) -> None:
        """The connection whose presence entry is ``entry`` left ``room``; the room's
        channel goes if nobody here is left."""
        if self._clustered and self.broker is not None:
            self.broker.presence_remove(room_channel(room), entry)
            await self._unsubscribe_if_empty(room)

    def rewritten(self, room: str, old: str, new: str) -> None:
        """A member of ``room`` changed its presence entry (its meta) from ``old`` to ``new``."""
        if self._clustered and self.broker is not None:
            # The new entry first: a read between the two writes sees the connection
            # twice (readers keep one per id), never not at all.
            self.broker.presence_add(room_channel(room), new)
            self.broker.presence_remove(room_channel(room), old)

    def departed(self, room: str, entry: str) -> None:
        """Like ``left``, without waiting (a connection that closed)."""
        if self._clustered and self.broker is not None:
            self.broker.presence_remove(room_channel(room), entry)
            if not self._occupied(room):
                self._background.spawn(self._unsubscribe_if_empty(room))

    async def _unsubscribe_if_empty(self, room: str) -> None:
        if not self._occupied(room) and self.broker is not None:
            # Decided now, not when the room emptied: someone may have joined since.
            await self.broker.unsubscribe(room_channel(room))
            followed = self._followed(room)
            if followed is not None:
                await self.broker.unsubscribe(followed)

    async def members(self, room: str | None) -> list[str]:
        """Ids of ``room``'s members (every connection when None) on every node.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """
        assert self.broker is not None
        found = await self.broker.presence(CONNS if room is None else room_channel(room))
        # A connection whose meta is being rewritten may have both its entries there.
        return sorted({member_id(entry) for entry in found})

    async def node_of(self, conn_id: str) -> str | None:
        """The node that has ``conn_id``, if any.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """
        assert self.broker is not None
        return await self.broker.presence_of(CONNS, conn_id)

    # -- publishing ------------------------------------------------------------------------------

    def envelope(
        self,
        payload: str | bytes,
        *,
        room: str | None = None,
        target: str | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Envelope:
        """An envelope from this node for a WebSocket message (text or bytes)."""
        binary = not isinstance(payload, str)
        body = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
        return Envelope(
            self.node, body, binary=binary, room=room, target=target, exclude=tuple(sorted(exclude))
        )

    async def publish(self, channel: str, note: Envelope) -> Published:
        """Hand ``note`` to the broker; never raises (an outage is logged, throttled)."""
        assert self.broker is not None
        try:
            await self.broker.publish(channel, envelope.encode(note))
        except BrokerUnavailable as exc:
            self._throttle.warning("not delivered to other nodes: %s", exc)
            return False, str(exc)
        return True, None

    async def publish_to(self, conn_id: str, note: Envelope) -> Published | None:
        """Publish ``note`` to the node that has ``conn_id``; None when no node has it."""
        try:
            node = await self.node_of(conn_id)
        except BrokerUnavailable as exc:
            self._throttle.warning("not delivered to other nodes: %s", exc)
            return False, str(exc)
        if node is None:
            return None
        return await self.publish("node:" + node, note)

    async def publish_with_history(
        self, channel: str, note: Envelope, stream: str, size: int, ttl: float, wait: bool = True
    ) -> Position | None:
        """Append ``note``'s payload to ``stream``'s history and publish ``note``, with the
        position the store gives, to ``channel``, in one step (``Broker.
        publish_with_history``). Every node with subscribers, this one included,
        delivers it when it arrives.

        Raises:
            BrokerUnavailable: nothing was kept or published.
        """
        assert self.broker is not None
        head = envelope.encode_open(note)
        return await self.broker.publish_with_history(
            channel, head, stream, note.payload, size, ttl, wait
        )

    # -- topics: messages for the layers above the manager ---------------------------

    def on_topic(self, topic: str, handler: TopicHandler) -> None:
        """Call ``handler`` with the ``Envelope`` of every ``publish_topic(topic, ...)`` made
        on another node.

        Raises:
            ValueError: the topic has a handler already, or its name is empty.
        """
        if not topic:
            raise ValueError("a topic needs a name")
        if topic in self._topics:
            raise ValueError(f"topic {topic!r} has a handler already")
        self._topics[topic] = handler

    async def publish_topic(
        self,
        topic: str,
        payload: bytes,
        *,
        room: str | None = None,
        to: str | None = None,
        channel: str | None = None,
        exclude: frozenset[str] = frozenset(),
        route: str | None = None,
    ) -> Delivery:
        """Hand ``payload`` to ``topic``'s handler on the other nodes (the caller serves this
        one itself): every node, only those with members in ``room``, only the node
        that has connection ``to``, or those subscribed to broker channel ``route``.
        ``channel`` and ``exclude`` travel in the envelope for the handler to use.

        Returns:
            A ``Delivery`` of 0 local connections, saying whether the other nodes were
            reached (``published`` is False, with no error, when no node has ``to``).
        """
        if not self._clustered:
            return Delivery(0)
        note = Envelope(
            self.node,
            payload,
            topic=topic,
            room=room,
            target=to,
            channel=channel,
            exclude=tuple(sorted(exclude)),
        )
        if to is None:
            return Delivery.of(0, await self.publish(route or _channel(room), note))
        outcome = await self.publish_to(to, note)
        return Delivery(0) if outcome is None else Delivery.of(0, outcome)

    @property
    def history(self) -> HistoryStore:
        """Where channel history is kept: the broker's store, shared by the nodes on it,
        or this process's own when there is no broker."""
        broker = self.broker
        if broker is not None and broker.history is not None:
            return broker.history
        if self._own_history is None:
            self._own_history = MemoryHistory()
        return self._own_history

    async def publish_topic_with_history(
        self,
        topic: str,
        payload: bytes,
        stream: str,
        size: int,
        ttl: float,
        *,
        room: str | None = None,
        channel: str | None = None,
        exclude: frozenset[str] = frozenset(),
        route: str | None = None,
    ) -> tuple[Position | None, bool]:
        """Keep ``payload`` in ``stream``'s history and, with other nodes, hand it with its
        position to ``topic``'s handler on every node with members in ``room``, this
        one included, in the order the store gave (or to the nodes subscribed to broker
        channel ``route``).

        Returns:
            Without other nodes: the position, and False: the caller delivers it here.
            With them: None (the broker has it, in order, without this waiting for the
            store's answer) and True: every node's handler gets it as it arrives.

        Raises:
            BrokerUnavailable: the store cannot be reached, or the broker is not
                started: nothing was kept or sent.
        """
        if not self._clustered:
            broker = self.broker
            if broker is not None and not broker.alone:
                # Starting or stopping: a store the nodes share is written only through
                # the broker, in one step with the publication (a NATS stream made
                # without it would not republish).
                raise BrokerUnavailable(broker.health().url, "the broker is not started")
            return await self.history.append(stream, payload, size, ttl), False
        note = Envelope(
            self.node,
            payload,
            topic=topic,
            room=room,
            channel=channel,
            exclude=tuple(sorted(exclude)),
        )
        await self.publish_with_history(
            route or _channel(room), note, stream, size, ttl, wait=False
        )
        return None, True

    # -- receiving -----------------------------------------------------------------------------

    def _on_message(self, channel: str, data: bytes) -> None:
        """A message from the broker: a topic's, or for this node's members."""
        if data[2:].startswith(self._own) and not envelope.positioned(data):
            # Our own: this node's members have it already. (A publication with a
            # position comes back to its own node too: every node delivers those in the
            # order the store gave, this one included, as they arrive.)
            return
        try:
            note = envelope.decode(data)
            size = len(note.payload)
            if size > self._limit:
                raise EnvelopeError(f"{size} bytes, over MAX_WS_MESSAGE_BYTES={self._limit}")
            if note.topic:
                self._run_topic(note)
                return
            payload = note.payload if note.binary else note.payload.decode("utf-8", "surrogatepass")
        except (EnvelopeError, UnicodeDecodeError) as exc:
            self._throttle.warning("skipped a message on %s: %s", channel, exc)
            return
        self._receive(channel, note, payload)

    def _run_topic(self, note: Envelope) -> None:
        handler = self._topics.get(note.topic)
        if handler is None:
            return
        try:
            handler(note)
        except Exception:
            logger.exception("handler of topic %r failed", note.topic)


def _channel(room: str | None) -> str:
    return ALL if room is None else room_channel(room)
