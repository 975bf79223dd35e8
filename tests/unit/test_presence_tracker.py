"""Presence replicas on two managers sharing an in-memory hub (no sockets): users on
both nodes, second tabs, meta changes, and a node that vanishes without a word."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Collection
from typing import Any

from gobstopper import Config, Connection, WebSocketManager
from gobstopper.brokers import MemoryBroker, MemoryHub
from gobstopper.brokers.base import BrokerHealth
from gobstopper.cluster import room_channel
from gobstopper.presence import PresenceDiff

from .fake_transport import make

ROOM = "lobby"


class Node:
    """A manager watching ``lobby``, with the changes its listener saw."""

    def __init__(self, hub: MemoryHub | None) -> None:
        broker = MemoryBroker(hub) if hub is not None else MemoryBroker()
        self.manager = WebSocketManager(Config.load({}), broker)
        self.seen: list[tuple[str, str, list[str]]] = []
        self.now = 0.0
        self.manager.presence_tracker.clock = lambda: self.now
        self.manager.watch_presence(lambda room: room == ROOM, self._heard)

    def _heard(self, room: str, diff: PresenceDiff) -> None:
        self.seen.append((diff.event, diff.user, [m.conn for m in diff.metas]))

    async def connect(self, conn_id: str, user: str | None, **meta: Any) -> Connection:
        ws, _ = make()
        await ws.accept()
        conn = self.manager.add(ws, conn_id, user=user, meta=meta)
        await conn.join(ROOM)
        return conn

    def users(self) -> dict[str, list[str]]:
        state = self.manager.presence_tracker.state(ROOM)
        return {} if state is None else {u: [m.conn for m in ms] for u, ms in state.users.items()}

    def take(self) -> list[tuple[str, str, list[str]]]:
        seen, self.seen = self.seen, []
        return seen


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run (notes travel through tasks) until ``check()``; fail if it never is."""
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("never true")


async def wait_for_condition(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (in real time: the reconciler runs on its own schedule) until ``check()``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never true"
        await asyncio.sleep(0.02)


async def nodes(n: int) -> list[Node]:
    hub = MemoryHub()
    found = [Node(hub) for _ in range(n)]
    for node in found:
        await node.manager.start()
    return found


async def test_alone_every_change_is_local_and_immediate() -> None:
    node = Node(None)
    await node.manager.start()
    ann1 = await node.connect("a1", "ann")
    await node.connect("b1", "bob")
    ann2 = await node.connect("a2", "ann", tab=2)
    assert node.take() == [
        ("join", "ann", ["a1"]),
        ("join", "bob", ["b1"]),
        ("update", "ann", ["a1", "a2"]),
    ]
    await ann1.set_meta({"away": True})
    assert node.take() == [("update", "ann", ["a1", "a2"])]
    node.manager.remove(ann1)
    await ann2.leave(ROOM)
    assert node.take() == [("update", "ann", ["a2"]), ("leave", "ann", ["a2"])]
    state = await node.manager.presence(ROOM)
    assert (list(state.users), state.connections) == (["bob"], 1)


async def test_a_user_on_two_nodes_leaves_once_with_the_last_connection() -> None:
    a, b = await nodes(2)
    await a.connect("bob1", "bob")
    ann1, ann2 = await a.connect("ann1", "ann"), await a.connect("ann2", "ann")
    ann3 = await b.connect("ann3", "ann", device="phone")
    both = {"ann": ["ann1", "ann2", "ann3"], "bob": ["bob1"]}
    await until(lambda: a.users() == both and b.users() == both)
    state = await b.manager.presence(ROOM)
    assert {u: len(ms) for u, ms in state.users.items()} == {"ann": 3, "bob": 1}
    assert state.users["ann"][2].meta == {"device": "phone"}
    a.take(), b.take()

    a.manager.remove(ann1)
    await ann2.leave(ROOM)
    await until(lambda: b.users()["ann"] == ["ann3"])
    assert [e for e, _, _ in a.take()] == ["update", "update"]
    assert [e for e, _, _ in b.take()] == ["update", "update"]
    await ann3.set_meta({"device": "tablet"})
    await until(lambda: len(a.seen) == 1)
    b.manager.remove(ann3)
    await until(lambda: len(a.seen) == 2)
    assert a.take() == [("update", "ann", ["ann3"]), ("leave", "ann", ["ann3"])]
    # Node b saw its own member go too (none of its members is left to be told), and
    # its replica went with it.
    assert b.take() == [("update", "ann", ["ann3"]), ("leave", "ann", ["ann3"])]
    assert a.users() == {"bob": ["bob1"]} and b.users() == {}


async def ann_vanishes() -> Node:
    """Node a with bob, after node b, where ann was, died: no note, its presence gone
    from the broker (its entries expired)."""
    a, b = await nodes(2)
    await a.connect("bob1", "bob")
    await b.connect("ann1", "ann")
    await until(lambda: "ann" in a.users())
    a.take()
    await b.manager.presence_tracker.stop()
    await b.manager.broker.stop()  # type: ignore[union-attr]
    return a


async def test_a_node_that_vanishes_takes_its_users_away_at_the_next_round() -> None:
    a = await ann_vanishes()
    tracker = a.manager.presence_tracker
    a.now = tracker.period
    await tracker.reconcile()
    assert a.take() == [("leave", "ann", ["ann1"])]


async def test_after_its_own_reconnection_a_node_waits_a_grace_for_the_dead() -> None:
    """A broker that restarted empty has not every node's presence back at once: right
    after this node's link came back, a node that looks dead must stay so a grace."""
    a = await ann_vanishes()
    tracker = a.manager.presence_tracker
    tracker._reconnected = a.now  # as the reconciler records a reconnection
    a.now += tracker.grace / 2
    await tracker.reconcile()
    assert a.take() == []  # young entries are trusted a while
    a.now += tracker.grace
    await tracker.reconcile()
    await tracker.reconcile()
    assert a.take() == [("leave", "ann", ["ann1"])]


async def test_a_replica_loads_what_the_other_nodes_had() -> None:
    a, b = await nodes(2)
    await a.connect("ann1", "ann")
    await a.connect("anon", None)
    await b.connect("bob1", "bob")
    await until(lambda: b.users() == {"ann": ["ann1"], "bob": ["bob1"]})
    state = b.manager.presence_tracker.state(ROOM)
    assert state is not None and state.connections == 3


class SlowReads(MemoryBroker):
    """A memory broker whose presence reads answer what the hub held when asked, but
    only once ``release`` is set: changes made meanwhile come as notes."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def presence(self, key: str) -> dict[str, str]:
        found = await super().presence(key)
        self.asked.set()
        await self.release.wait()
        return found


async def test_notes_that_arrive_while_a_replica_loads_are_applied_after_it() -> None:
    hub = MemoryHub()
    a = Node(hub)
    b = Node(hub)
    slow = SlowReads(hub)
    b.manager = WebSocketManager(Config.load({}), slow)
    b.manager.watch_presence(lambda room: room == ROOM, b._heard)
    for node in (a, b):
        await node.manager.start()
    ann1 = await a.connect("ann1", "ann", status="here")
    await a.connect("cat1", "cat")
    await b.connect("bob1", "bob")  # b's first member: its replica loads, slowly
    await slow.asked.wait()
    await ann1.set_meta({"status": "away"})  # noted while b loads
    a.manager.remove(a.manager.get("cat1"))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await a.connect("dan1", "dan")
    await until(lambda: len(a.seen) == 6)  # ann, cat, bob (a note), ann, cat, dan
    slow.release.set()
    await until(lambda: b.manager.presence_tracker.state(ROOM) is not None and "dan" in b.users())
    state = b.manager.presence_tracker.state(ROOM)
    assert state is not None
    assert b.users() == {"ann": ["ann1"], "bob": ["bob1"], "dan": ["dan1"]}
    assert state.users["ann"][0].meta == {"status": "away"}
    # Each user's changes in order, applied by assignment: the view ends where b is.
    view: dict[str, list[str]] = {}
    for event, user, found in b.take():
        if event == "leave":
            del view[user]
        else:
            view[user] = found
    assert view == b.users()


class Reconnecting(MemoryBroker):
    """A memory broker whose health reports reconnections when told."""

    reconnects = 0

    def health(self) -> BrokerHealth:
        return dataclasses.replace(super().health(), reconnects=self.reconnects)


async def test_after_a_reconnection_the_replica_catches_up_with_what_it_missed() -> None:
    hub = MemoryHub()
    a, b = Node(hub), Node(hub)
    broker = Reconnecting(hub)
    a.manager = WebSocketManager(Config.load({}, presence_ttl=100.0), broker)
    a.manager.presence_tracker.clock = lambda: a.now
    a.manager.watch_presence(lambda room: room == ROOM, a._heard)
    for node in (a, b):
        await node.manager.start()
    await a.connect("ann1", "ann")
    await b.connect("bob1", "bob")
    await until(lambda: "bob" in a.users())
    # a's link drops: b's next member's note never reaches it.
    await broker.unsubscribe(room_channel(ROOM))
    await b.connect("cat1", "cat")
    await until(lambda: not b.manager.presence_tracker._outgoing)  # its note: lost
    await broker.subscribe(room_channel(ROOM))
    broker.reconnects += 1
    assert "cat" not in a.users()
    a.take()

    def caught_up() -> bool:
        a.now += 0.1  # a's clock runs 5 times as fast: the next round is at 25 s
        return "cat" in a.users()

    await wait_for_condition(caught_up, timeout=3.0)
    assert a.now < 10
    assert a.take() == [("join", "cat", ["cat1"])]


async def test_alone_a_room_remembers_no_removed_connection() -> None:
    node = Node(None)
    await node.manager.start()
    await node.connect("keep", "ann")
    for i in range(500):
        node.manager.remove(await node.connect(f"c{i}", "bob"))
        node.now += 100.0
    assert node.manager.presence_tracker._rooms[ROOM].replica._removed == {}
    assert node.users() == {"ann": ["keep"]}


class Gated(MemoryBroker):
    """A memory broker whose room subscriptions each wait for a gate of their own."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.gates: list[asyncio.Event] = []

    async def subscribe(self, channel: str) -> None:
        if channel.startswith("room:"):
            gate = asyncio.Event()
            self.gates.append(gate)
            await gate.wait()
        await super().subscribe(channel)


async def gated_nodes() -> tuple[Node, Node, Gated]:
    hub = MemoryHub()
    a, b = Node(hub), Node(hub)
    gated = Gated(hub)
    a.manager = WebSocketManager(Config.load({}), gated)
    a.manager.watch_presence(lambda room: room == ROOM, a._heard)
    for node in (a, b):
        await node.manager.start()
    return a, b, gated


async def test_a_cancelled_first_join_does_not_leave_the_room_unloaded() -> None:
    a, b, gated = await gated_nodes()
    await b.connect("b1", "bob")
    first = asyncio.ensure_future(a.connect("x", "xena"))
    await until(lambda: len(gated.gates) == 1)
    await a.connect("y", "yann")  # not the first: no subscription of its own
    first.cancel()  # its handler stopped, a timeout...
    await asyncio.gather(first, return_exceptions=True)
    # Every later subscriber here waits for the replica: it is loaded all the same.
    await asyncio.wait_for(a.manager.presence_tracker.ready(ROOM), 2.0)
    assert a.users() == {"bob": ["b1"], "xena": ["x"], "yann": ["y"]}


async def test_a_stale_first_join_does_not_load_the_next_replica_early() -> None:
    a, _, gated = await gated_nodes()
    x = asyncio.ensure_future(a.connect("x", "xena"))
    await until(lambda: len(gated.gates) == 1)
    a.manager.remove(a.manager.get("x"))  # type: ignore[arg-type]  # x closes meanwhile
    y = asyncio.ensure_future(a.connect("y", "yann"))  # the first again: a new replica
    await until(lambda: len(gated.gates) == 2)
    gated.gates[0].set()  # x's subscription is confirmed, late
    await x
    room = a.manager.presence_tracker._rooms[ROOM]
    # y's subscription is still on its way: the replica is not read before it (notes
    # sent meanwhile would be missed until the next reconciliation).
    assert room.waiting and not room.loaded.is_set()
    gated.gates[1].set()
    await y
    await asyncio.wait_for(room.loaded.wait(), 2.0)


async def test_a_connection_that_moves_to_another_node_stays() -> None:
    a, b, c = await nodes(3)
    await a.connect("ann1", "ann")
    await b.connect("x", "xena")
    await until(lambda: "xena" in a.users())
    a.take()
    # x comes back on c (a reused id) before b has seen it go: c's put reaches a
    # before b's drop.
    await c.connect("x", "xena", device="phone")
    b.manager.remove(b.manager.get("x"))  # type: ignore[arg-type]
    trackers = [n.manager.presence_tracker for n in (a, b, c)]
    await until(lambda: not any(t._outgoing for t in trackers))
    assert a.users() == {"ann": ["ann1"], "xena": ["x"]}
    assert [event for event, _, _ in a.take()] == ["update"]  # the new meta; no leave


class Counting(MemoryBroker):
    """A memory broker that counts presence and liveness reads (the first ``fail``
    liveness reads fail with an unexpected error)."""

    def __init__(self, hub: MemoryHub, fail: int = 0) -> None:
        super().__init__(hub)
        self.reads = 0
        self.liveness = 0
        self.fail = fail

    async def presence(self, key: str) -> dict[str, str]:
        self.reads += 1
        return await super().presence(key)

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        self.liveness += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError("a bug")
        return await super().live_nodes(nodes)


async def test_dead_nodes_are_found_with_one_read_and_rooms_are_read_once_per_ttl() -> None:
    hub = MemoryHub()
    a, b = Node(hub), Node(hub)
    counting = Counting(hub)
    a.manager = WebSocketManager(Config.load({}), counting)
    tracker = a.manager.presence_tracker
    tracker.clock = lambda: a.now
    a.manager.watch_presence(lambda room: room.startswith("r"), a._heard)
    b.manager.watch_presence(lambda room: room.startswith("r"), b._heard)
    for node in (a, b):
        await node.manager.start()
    for i in range(20):
        for node in (a, b):
            ws, _ = make()
            await ws.accept()
            name = f"{'a' if node is a else 'b'}{i}"
            conn = node.manager.add(ws, name, user=name)
            await conn.join(f"r{i}")

    def full() -> bool:
        states = [tracker.state(f"r{i}") for i in range(20)]
        return all(state is not None and state.unique_users == 2 for state in states)

    await wait_for_condition(full)
    counting.reads = 0
    a.take()
    # A round later: one liveness read, no room read yet.
    a.now += tracker.period
    await tracker.reconcile(due_only=True)
    assert (counting.liveness, counting.reads) == (1, 0)
    # Over one TTL, each room is read about once (at jittered times).
    for _ in range(round(tracker.full_period * 1.25 / tracker.period)):
        a.now += tracker.period
        await tracker.reconcile(due_only=True)
    assert 20 <= counting.reads <= 40
    # b dies: its users leave every room at once, in the round that finds it dead.
    await b.manager.presence_tracker.stop()
    await b.manager.broker.stop()  # type: ignore[union-attr]
    reads = counting.reads
    a.now += tracker.period
    await tracker.reconcile(due_only=True)
    assert sorted(user for event, user, _ in a.take() if event == "leave") == sorted(
        f"b{i}" for i in range(20)
    )
    assert counting.reads - reads <= 10


async def test_stopping_ends_the_loads_and_a_failed_load_keeps_no_one_waiting() -> None:
    hub = MemoryHub()
    a, b = Node(hub), Node(hub)
    slow = SlowReads(hub)
    b.manager = WebSocketManager(Config.load({}), slow)
    b.manager.watch_presence(lambda room: room == ROOM, b._heard)
    for node in (a, b):
        await node.manager.start()
    await a.connect("ann1", "ann")
    await b.connect("bob1", "bob")
    await slow.asked.wait()
    tracker = b.manager.presence_tracker
    assert len(tracker._background) == 1
    await asyncio.wait_for(b.manager.stop(), 2.0)
    assert len(tracker._background) == 0
    await asyncio.wait_for(tracker.ready(ROOM), 1.0)

    class Broken(MemoryBroker):
        async def presence(self, key: str) -> dict[str, str]:
            raise RuntimeError("a bug")

    c = Node(hub)
    c.manager = WebSocketManager(Config.load({}), Broken(hub))
    c.manager.watch_presence(lambda room: room == ROOM, c._heard)
    await c.manager.start()
    await c.connect("cat1", "cat")
    await asyncio.wait_for(c.manager.presence_tracker.ready(ROOM), 1.0)
    assert c.users() == {"cat": ["cat1"]}


async def test_the_reconciler_goes_on_after_an_unexpected_error() -> None:
    hub = MemoryHub()
    counting = Counting(hub, fail=1)
    a, b = Node(hub), Node(hub)
    a.manager = WebSocketManager(Config.load({}, presence_ttl=0.4), counting)
    a.manager.watch_presence(lambda room: room == ROOM, a._heard)
    for node in (a, b):
        await node.manager.start()
    await a.connect("ann1", "ann")
    await b.connect("bob1", "bob")
    await until(lambda: "bob" in a.users())
    await wait_for_condition(lambda: counting.liveness >= 2, timeout=3.0)
    await a.manager.stop()


async def test_a_meta_shows_the_same_here_as_on_the_other_nodes() -> None:
    a, b = await nodes(2)
    odd: dict[Any, Any] = {2: True, False: "no", "pair": (1, 2)}
    conn = await a.connect("ann1", "ann", **{"x": 0})
    await conn.set_meta(odd)
    await b.connect("bob1", "bob")
    await until(lambda: "ann" in b.users())
    here, there = a.manager.presence_tracker.state(ROOM), b.manager.presence_tracker.state(ROOM)
    assert here is not None and there is not None
    assert dict(conn.meta) == {"2": True, "false": "no", "pair": [1, 2]}
    assert here.users["ann"] == there.users["ann"]
