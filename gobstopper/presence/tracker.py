"""Live presence of watched rooms: a replica per room on each node that has members in
it, and the user-level changes (``PresenceDiff``) handed to the watchers.

A room is watched when a ``watch(match, listener)`` matches its name (the message layer
watches the rooms of the channels that track presence). For a watched room with
members here, this node keeps a ``Replica``:

- created on the room's first member here, and loaded from the broker's presence once
  the room's broker channel is subscribed (notes that arrive while it loads are applied
  after it, in order);
- changed at once by this node's own joins, leaves and meta changes (this node's
  members see them without a round trip), each also published as a note on topic
  ``presence`` to the nodes with members in the room, which apply it to theirs;
- every second (every ``presence_ttl / 4`` when that is shorter), one read of the
  liveness of the nodes its records are on (``Broker.live_nodes``): the records of a
  node found dead (its presence expired: ``presence_ttl`` after its last word) are
  removed at once, in every room; only for a while after this node's own broker
  connection came back (a broker that restarted empty has not every node's liveness
  back yet) must a node stay dead for a grace first;
- reconciled with the broker's presence of the room about once per ``presence_ttl``
  (at a jittered time, so that the rooms' reads spread), and a second after the broker
  connection is re-established (notes sent meanwhile are lost): a connection the
  broker has missed for a grace is removed, one it has and this node does not is
  added; a change made here less than a grace ago is left alone, so writes still on
  their way do not flap.

Each node computes the transitions from its own replica and hands them to its own
listeners, which push to this node's members only: every member gets each change once.
Without other nodes the replica is this node's members, and every change is immediate.
The replica goes when the room has no member here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Container, Mapping
from typing import TYPE_CHECKING

from .._util import TaskSet, Throttle, cancel_and_wait
from ..cluster import room_channel
from ..errors import BrokerUnavailable
from . import PresenceDiff, PresenceState, Record, parse_entry
from .replica import Replica

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..envelope import Envelope

__all__ = ["TOPIC", "Listener", "PresenceTracker"]

logger = logging.getLogger("gobstopper.presence")

#: The topic of presence notes between nodes: ``{"op": "put", "entry": <entry>}`` or
#: ``{"op": "drop", "conn": <id>}``, in an envelope naming the room.
TOPIC = "presence"
#: Called with a watched room's name and each of its user-level changes.
Listener = Callable[[str, PresenceDiff], None]
#: How often the reconciler looks at the broker's health (a reconnection is noticed so).
CHECK_S = 0.5
#: How long after a reconnection the replicas are compared with the broker (the other
#: nodes, reconnecting too, write their presence back meanwhile).
AFTER_RECONNECT_S = 1.0
#: How often, at most, the liveness of the nodes with members in watched rooms is read:
#: a killed node's users leave at most this long after its presence expires.
LIVENESS_S = 1.0


#: A note from another node: ``(conn id, its record or None for a drop, the node)``.
_Note = tuple[str, "Record | None", str]


class _Room:
    """A watched room with members here: its replica, and whether it is loaded."""

    __slots__ = ("loaded", "name", "next_read", "pending", "replica", "waiting")

    def __init__(self, name: str, clustered: bool, grace: float) -> None:
        self.name = name
        self.replica = Replica(name, grace, clustered)
        self.loaded = asyncio.Event()
        #: Notes from other nodes held while the replica loads; None once loaded.
        self.pending: list[_Note] | None = [] if clustered else None
        #: Loading waits for the room's broker channel to be subscribed.
        self.waiting = clustered
        #: When the reconciler reads the room's presence next (monotonic seconds).
        self.next_read = 0.0
        if not clustered:
            self.loaded.set()


class PresenceTracker:
    """The replicas of one manager's watched rooms (``manager.presence_tracker``).

    Args:
        cluster: this node's side of the broker.
        local: this node's members of a room, ``conn id -> (user, meta)``.
        own: this node's connection ids.
        ttl: ``GOBSTOPPER_PRESENCE_TTL``: how long a silent node's members stay, and
            about how often each room is compared with the broker.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        cluster: Cluster,
        local: Callable[[str], Mapping[str, Record]],
        own: Container[str],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self._local = local
        self._own = own
        #: How often the nodes' liveness is read (rooms are read whole when due).
        self.period = min(LIVENESS_S, ttl / 4)
        self._ttl = ttl
        #: How often, on average, a room's presence is read whole.
        self.full_period = ttl
        #: How long a change made here is trusted over a broker that does not show it.
        self.grace = max(1.0, ttl / 4)
        #: Monotonic seconds (tests set their own).
        self.clock = clock
        self._watchers: list[tuple[Callable[[str], bool], Listener]] = []
        self._rooms: dict[str, _Room] = {}
        self._outgoing: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background = TaskSet(logger, "presence load", throttle=True)
        self._throttle = Throttle(logger)
        self._dead_since: dict[str, float] = {}  # nodes found dead, and since when
        self._reconnected: float | None = None  # when this node's broker link came back
        cluster.on_topic(TOPIC, self._on_note)

    # -- watching ------------------------------------------------------------------------

    def watch(self, match: Callable[[str], bool], listener: Listener) -> None:
        """Keep a replica of every room ``match`` accepts that has members here, and call
        ``listener(room, diff)`` with each of its changes."""
        self._watchers.append((match, listener))

    def watched(self, room: str) -> bool:
        return any(match(room) for match, _ in self._watchers)

    def rescan(self, rooms: list[str]) -> None:
        """Open the replicas of ``rooms`` (this node's) that a new watch matches."""
        for room in rooms:
            if room not in self._rooms and self.watched(room):
                opened = self._open(room)
                local = self._local(room)
                opened.replica.apply(local, self.clock(), dict.fromkeys(local, self.cluster.node))
                self._start_load(room, opened)

    def _open(self, room: str) -> _Room:
        found = self._rooms.get(room)
        if found is None:
            found = self._rooms[room] = _Room(room, self.cluster.clustered, self.grace)
        return found

    def _notify(self, diffs: list[PresenceDiff]) -> None:
        for diff in diffs:
            for match, listener in self._watchers:
                if not match(diff.room):
                    continue
                try:
                    listener(diff.room, diff)
                except Exception:  # one listener's failure is not the others'
                    logger.exception("presence listener failed on %r", diff.room)

    # -- this node's members -----------------------------------------------------------

    def joined(self, room: str, conn_id: str, record: Record) -> _Room | None:
        """A connection here joined ``room`` (called as it joins: its change is seen here
        at once). Returns what ``subscribed`` takes once the join went through the
        broker."""
        if not self.watched(room):
            return None
        opened = self._open(room)
        self._notify(opened.replica.put(conn_id, record, self.clock(), self.cluster.node))
        return opened

    def subscribed(self, joined: _Room | None, entry: str | None, first: bool) -> None:
        """The join ``joined()`` returned ``joined`` for went through the broker, or was
        abandoned (cancelled: the load starts all the same, or the room's later
        members would wait for it for ever). ``first``: it subscribed the room's
        channel; ``entry``: the member's presence entry, None if it left meanwhile.
        A join of a room that has emptied since (and has another replica now) is
        nothing to that replica."""
        if joined is None or not self.cluster.clustered:
            return
        if self._rooms.get(joined.name) is not joined:
            return
        if entry is not None:
            self._send(joined.name, {"op": "put", "entry": entry})
        if first:
            self._start_load(joined.name, joined)

    def changed(self, room: str, conn_id: str, record: Record, entry: str) -> None:
        """A connection here changed its meta."""
        found = self._rooms.get(room)
        if found is None:
            return
        diffs = found.replica.put(conn_id, record, self.clock(), self.cluster.node)
        if self.cluster.clustered:
            self._send(room, {"op": "put", "entry": entry})
        self._notify(diffs)

    def left(self, room: str, conn_id: str) -> None:
        """A connection here left ``room`` (or closed)."""
        found = self._rooms.get(room)
        if found is None:
            return
        diffs = found.replica.drop(conn_id, self.clock())
        if self.cluster.clustered:
            self._send(room, {"op": "drop", "conn": conn_id})
        if not self._local(room):
            del self._rooms[room]  # nobody here to tell any more
            found.loaded.set()
        self._notify(diffs)

    # -- reading ------------------------------------------------------------------------

    def state(self, room: str) -> PresenceState | None:
        """The presence of a watched room as this node has it (None: no replica here)."""
        found = self._rooms.get(room)
        return None if found is None else found.replica.state()

    async def ready(self, room: str) -> None:
        """Return once ``room``'s replica, if there is one, is loaded."""
        found = self._rooms.get(room)
        if found is not None:
            await found.loaded.wait()

    # -- the other nodes -------------------------------------------------------------------

    def _send(self, room: str, note: dict[str, str]) -> None:
        """Publish ``note`` to the room's other nodes, in order with this node's others."""
        self._outgoing.append((room, json.dumps(note, ensure_ascii=False).encode()))
        self._wake.set()

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing:
                room, payload = self._outgoing.popleft()
                await self.cluster.publish_topic(TOPIC, payload, room=room)

    def _on_note(self, note: Envelope) -> None:
        """A change from another node."""
        found = self._rooms.get(note.room or "")
        if found is None:
            return
        try:
            change = json.loads(note.payload)
            if change["op"] == "put":
                conn_id, user, meta = parse_entry(change["entry"])
                item: _Note = (conn_id, (user, meta), note.origin)
            elif change["op"] == "drop":
                item = (str(change["conn"]), None, note.origin)
            else:
                raise ValueError(f"unknown op {change['op']!r}")
        except (ValueError, KeyError, TypeError) as exc:
            self._throttle.warning("skipped a presence note: %s", exc)
            return
        if item[0] in self._own:
            return  # this node's own connections are as it knows them
        if found.pending is not None:
            found.pending.append(item)
            return
        self._notify(self._apply_note(found.replica, item))

    def _apply_note(self, replica: Replica, item: _Note) -> list[PresenceDiff]:
        conn_id, record, node = item
        if record is None:
            return replica.drop(conn_id, self.clock(), node)
        return replica.put(conn_id, record, self.clock(), node)

    def _start_load(self, room: str, found: _Room) -> None:
        if found.waiting and self.cluster.clustered:
            found.waiting = False
            self._background.spawn(self._load(room, found))

    async def _load(self, room: str, found: _Room) -> None:
        """Read the room from the broker, then apply the notes held meanwhile. However
        it ends, the replica counts as loaded: nothing waits for it for ever."""
        diffs: list[PresenceDiff] = []
        try:
            now = self.clock()
            try:
                records, nodes = await self._read(room)
            except BrokerUnavailable as exc:
                # This node's members are shown now; the others come with the next
                # reconciliation.
                self._throttle.warning("presence of %r not loaded: %s", room, exc)
                records, nodes = {}, {}
                found.next_read = 0.0  # read it at the next round
            else:
                found.next_read = self._next_read()
            if self._rooms.get(room) is found:
                local = self._local(room)
                diffs = found.replica.reconcile(records, local, self._own, now, nodes)
        finally:
            pending, found.pending = found.pending or [], None
            for item in pending:
                diffs += self._apply_note(found.replica, item)
            found.loaded.set()
            if self._rooms.get(room) is found:
                self._notify(diffs)

    def _next_read(self) -> float:
        """When a room just read is read whole again: about once per ``full_period``,
        jittered so that the rooms' reads spread over it."""
        return self.clock() + self.full_period * (0.75 + random.random() / 2)

    async def _read(self, room: str) -> tuple[dict[str, Record], dict[str, str]]:
        """The room's members as the broker has them, and the node of each."""
        assert self.cluster.broker is not None
        records: dict[str, Record] = {}
        nodes: dict[str, str] = {}
        found = await self.cluster.broker.presence(room_channel(room))
        for member, node in found.items():
            conn_id, user, meta = parse_entry(member)
            records[conn_id] = (user, meta)
            nodes[conn_id] = node
        return records, nodes

    async def check_nodes(self) -> None:
        """Remove at once, from every replica, the records of the nodes found dead, in
        one read of their liveness. Within ``presence_ttl`` of this node's own
        reconnection, a node must be found dead for a grace first: a broker that
        restarted empty has not every node's liveness back yet.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """
        assert self.cluster.broker is not None
        nodes: set[str] = set()
        for found in self._rooms.values():
            if found.pending is None:
                nodes |= found.replica.remote_nodes()
        nodes.discard(self.cluster.node)
        if not nodes:
            self._dead_since.clear()
            return
        alive = await self.cluster.broker.live_nodes(nodes)
        now = self.clock()
        self._dead_since = {n: self._dead_since.get(n, now) for n in nodes - alive}
        recent = self._reconnected is not None and now - self._reconnected < self._ttl
        grace = self.grace if recent else 0.0
        dead = {n for n, since in self._dead_since.items() if now - since >= grace}
        if not dead:
            return
        for found in list(self._rooms.values()):
            if found.pending is None:
                self._notify(found.replica.drop_nodes(dead, self._own, now))

    async def reconcile(self, due_only: bool = False) -> None:
        """Check the nodes' liveness (``check_nodes``), and bring the loaded replicas to
        what the broker holds (see ``Replica.reconcile``): every one, or with
        ``due_only`` those whose time has come.

        Raises:
            BrokerUnavailable: the broker cannot be read now.
        """
        await self.check_nodes()
        for room, found in list(self._rooms.items()):
            if found.pending is not None:
                continue  # loading: it reads the broker itself
            if due_only and self.clock() < found.next_read:
                continue
            now = self.clock()
            records, nodes = await self._read(room)
            if self._rooms.get(room) is not found or found.pending is not None:
                continue
            found.next_read = self._next_read()
            local = self._local(room)
            self._notify(found.replica.reconcile(records, local, self._own, now, nodes))

    async def _reconciler(self) -> None:
        broker = self.cluster.broker
        assert broker is not None
        seen = broker.health().reconnects
        due = self.clock() + self.period
        every = False  # read every room at the next round (after a reconnection)
        while True:
            await asyncio.sleep(min(CHECK_S, self.period))
            health = broker.health()
            if health.reconnects != seen:
                # Notes sent while the link was down are lost: look again once the
                # other nodes have had the time to write their presence back.
                seen = health.reconnects
                self._reconnected = self.clock()
                due = min(due, self.clock() + AFTER_RECONNECT_S)
                every = True
            if not health.connected or self.clock() < due:
                continue
            due = self.clock() + self.period
            try:
                await self.reconcile(due_only=not every)
                every = False
            except BrokerUnavailable as exc:
                self._throttle.warning("presence not reconciled: %s", exc)
            except Exception as exc:  # a bug here must not end the reconciliation
                self._throttle.warning("presence reconciliation failed: %r", exc)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """With other nodes: send notes, reconcile, and load the replicas opened before."""
        if not self.cluster.clustered or self._tasks:
            return
        self._tasks = [asyncio.ensure_future(self._sender())]
        self._tasks.append(asyncio.ensure_future(self._reconciler()))
        for room, found in list(self._rooms.items()):
            if found.pending is None:
                found.pending, found.loaded = [], asyncio.Event()
            found.waiting = True
            self._start_load(room, found)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        await self._background.cancel()
        self._outgoing.clear()
