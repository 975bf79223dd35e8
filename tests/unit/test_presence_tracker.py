"""Presence replicas on two managers sharing an in-memory hub (no sockets): users on
both nodes, second tabs, meta changes, and a node that vanishes without a word."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gobstopper import Config, Connection, WebSocketManager
from gobstopper.brokers import MemoryBroker, MemoryHub
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
