"""Presence replicas on two managers sharing an in-memory hub (no sockets): users on
both nodes, second tabs, meta changes, and a node that vanishes without a word."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
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


async def test_a_node_that_vanishes_takes_its_users_away_after_the_grace() -> None:
    a, b = await nodes(2)
    await a.connect("bob1", "bob")
    await b.connect("ann1", "ann")
    await until(lambda: "ann" in a.users())
    a.take()
    # Node b dies: no note, its presence gone from the broker (its entries expired).
    await b.manager.presence_tracker.stop()
    await b.manager.broker.stop()  # type: ignore[union-attr]
    tracker = a.manager.presence_tracker
    a.now = tracker.grace / 2
    await tracker.reconcile()
    assert a.take() == []  # young entries are trusted a while
    a.now = tracker.grace * 2
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
