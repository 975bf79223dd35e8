"""Rooms, delivery modes and slow-consumer policies against fake transports (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gobstopper import (
    CloseCode,
    Connection,
    ConnectionClosed,
    MessageTooBig,
    WebSocket,
)

from .fake_transport import connected, make, manager, release_until


async def test_rooms_members_counts_and_empty_room_deletion() -> None:
    mgr = manager()
    alice, _ = await connected(mgr, "alice")
    bob, _ = await connected(mgr, "bob")
    await alice.join("lobby")
    await alice.join("lobby")  # twice is harmless
    await bob.join("lobby")
    await bob.join("games")
    assert sorted(mgr.rooms()) == ["games", "lobby"]
    assert sorted(mgr.members("lobby")) == ["alice", "bob"]
    assert (mgr.count("lobby"), mgr.count("games"), mgr.count()) == (2, 1, 2)
    assert mgr.rooms_of("bob") == {"lobby", "games"} and mgr.rooms_of(alice) == {"lobby"}
    await bob.leave("games")
    assert "games" not in mgr.rooms()  # empty rooms are deleted
    mgr.remove(alice)
    assert mgr.members("lobby") == ["bob"] and "alice" not in mgr
    mgr.remove(bob)
    assert mgr.rooms() == [] and len(mgr) == 0


async def test_duplicate_id_is_refused() -> None:
    mgr = manager()
    await connected(mgr, "alice")
    with pytest.raises(ValueError, match="'alice' is already connected"):
        await connected(mgr, "alice")


async def test_delivery_modes() -> None:
    mgr = manager()
    conns = {}
    for name in ("ann", "ben", "cat", "dan"):
        conns[name] = await connected(mgr, name)
    for name in ("ann", "ben", "cat"):
        await conns[name][0].join("room")
    conns["ann"][0].state.role = "admin"
    conns["dan"][0].state.role = "admin"

    assert await mgr.broadcast("to room", room="room") == 3
    assert await mgr.broadcast("to all") == 4
    assert await mgr.broadcast("not ann", room="room", exclude=conns["ann"][0]) == 2
    assert await mgr.broadcast("not ann or ben", exclude=["ann", conns["ben"][0]]) == 2
    admins = await mgr.broadcast(
        "admins", predicate=lambda c: getattr(c.state, "role", None) == "admin"
    )
    assert admins == 2
    assert await mgr.send_to("cat", b"direct") is True
    assert await mgr.send_to("nobody", "x") is False

    def sent(name: str) -> list[Any]:
        return conns[name][1].sent

    assert sent("ann") == ["to room", "to all", "admins"]
    assert sent("ben") == ["to room", "to all", "not ann"]
    assert sent("cat") == ["to room", "to all", "not ann", "not ann or ben", b"direct"]
    assert sent("dan") == ["to all", "not ann or ben", "admins"]


async def test_payload_is_encoded_once_for_all_recipients() -> None:
    mgr = manager()
    transports = [(await connected(mgr))[1] for _ in range(5)]
    await mgr.broadcast({"kind": "tick", "n": 1, "text": "héllo"})
    first = transports[0].sent[0]
    assert first == '{"kind":"tick","n":1,"text":"héllo"}'
    # The very same string object went to every recipient: it was encoded once.
    assert all(t.sent[0] is first for t in transports)


async def test_too_big_broadcast_raises_and_nobody_gets_it() -> None:
    mgr = manager(max_message_bytes=100)
    _, transport = await connected(mgr, max_message_bytes=100)
    with pytest.raises(MessageTooBig):
        await mgr.broadcast("é" * 51)  # 102 bytes
    with pytest.raises(TypeError):
        await mgr.broadcast({"not": object()})
    assert transport.sent == []


async def test_per_connection_order_survives_the_backlog() -> None:
    mgr = manager()
    conn, transport = await connected(mgr)
    transport.stalled = True
    for i in range(50):  # window of 4 in flight, the rest in the backlog
        await mgr.broadcast(str(i))
    assert len(transport.stalled_sends) == 4 and conn.outbox.queued_messages == 50
    await release_until(transport, 50)
    assert transport.sent == [str(i) for i in range(50)]
    assert await conn.outbox.flush(1)
    assert conn.outbox.queued_messages == 0 and conn.outbox.queued_bytes == 0


async def test_policy_close_closes_slow_consumer_and_frees_its_queue() -> None:
    mgr = manager(send_queue_messages=10)
    slow, slow_t = await connected(mgr, "slow")
    fast, fast_t = await connected(mgr, "fast")
    await slow.join("room")
    await fast.join("room")
    slow_t.stalled = True
    for i in range(11):
        await mgr.broadcast(str(i), room="room")
    assert slow.ws.close_code == CloseCode.TRY_AGAIN_LATER
    assert mgr.members("room") == ["fast"] and "slow" not in mgr
    assert slow.outbox.queued_bytes == 0 and mgr.stats.slow_closed == 1
    await asyncio.wait_for(slow_t.closed_event.wait(), 1)
    assert slow_t.closed == (1013, "slow consumer")
    assert fast_t.sent == [str(i) for i in range(11)]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Window of 4 already started (0-3); the backlog holds 6 of the rest.
        ("drop_newest", [str(i) for i in range(10)]),
        ("drop_oldest", [*map(str, range(4)), *map(str, range(14, 20))]),
    ],
)
async def test_drop_policies(policy: str, expected: list[str]) -> None:
    mgr = manager(send_queue_messages=10, slow_consumer_policy=policy)
    conn, transport = await connected(mgr)
    transport.stalled = True
    for i in range(20):
        await mgr.broadcast(str(i))
    assert conn.outbox.dropped == 10 and mgr.stats.dropped == 10
    assert conn.outbox.queued_messages == 10 and not conn.closed
    await release_until(transport, 10)
    assert transport.sent == expected


async def test_queue_is_bounded_in_bytes() -> None:
    mgr = manager(send_queue_bytes=1000, max_message_bytes=1000, slow_consumer_policy="drop_newest")
    conn, transport = await connected(mgr, max_message_bytes=1000)
    transport.stalled = True
    for _ in range(10):
        await mgr.broadcast("x" * 300)
    assert conn.outbox.queued_bytes == 900 and conn.outbox.dropped == 7


async def test_send_blocked_past_timeout_closes_as_slow() -> None:
    mgr = manager(send_timeout=0.05)
    conn, transport = await connected(mgr)
    transport.stalled = True
    for i in range(5):  # one more than the window: the drain task waits on a send
        await mgr.broadcast(str(i))
    assert await asyncio.wait_for(conn.ws.wait_closed(), 2) == CloseCode.TRY_AGAIN_LATER
    assert "slow" not in mgr and len(mgr) == 0


async def test_vanished_client_mid_broadcast_is_removed_and_others_still_served() -> None:
    mgr = manager()
    members = [await connected(mgr, f"c{i}") for i in range(5)]
    for conn, _ in members:
        await conn.join("room")
    members[2][1].peer_gone = True  # its sends now fail
    # Failed sends are noticed when the connection's started sends are next checked,
    # at the latest once its window (4 here) is used: never does a broadcast raise.
    counts = [await mgr.broadcast(f"m{i}", room="room") for i in range(10)]
    assert counts[0] == 5 and counts[-1] == 4
    assert sorted(mgr.members("room")) == ["c0", "c1", "c3", "c4"] and "c2" not in mgr
    for i in (0, 1, 3, 4):
        assert members[i][1].sent == [f"m{n}" for n in range(10)]


async def test_membership_changes_during_a_broadcast_are_safe() -> None:
    mgr = manager()
    members = [await connected(mgr, f"c{i}") for i in range(6)]
    for conn, _ in members:
        await conn.join("room")
    newcomer, newcomer_t = await connected(mgr, "new")
    seen: list[str] = []
    joins: list[asyncio.Task[None]] = []

    def churn(conn: Connection) -> bool:
        seen.append(conn.id)
        if conn.id == "c1":
            mgr.remove(members[3][0])  # someone disconnects mid-broadcast
            joins.append(asyncio.get_running_loop().create_task(newcomer.join("room")))
        return True

    assert await mgr.broadcast("hi", room="room", predicate=churn) == 5
    assert seen == [f"c{i}" for i in range(6)]  # the snapshot was iterated whole
    assert members[3][1].sent == []  # removed before its turn: its outbox was closed
    await asyncio.gather(*joins)
    assert "new" in mgr.members("room") and newcomer_t.sent == []


async def test_ten_thousand_cycles_leave_nothing_behind() -> None:
    mgr = manager()
    for i in range(10_000):
        ws, transport = make()
        await ws.accept()
        async with mgr.connect(ws) as conn:
            await conn.join(f"room-{i % 7}")
            await conn.join("everyone")
            await mgr.broadcast("x", room="everyone")
            if i % 2:
                transport.push(0, 1000)  # half of them: the client leaves first
    assert len(mgr) == 0 and mgr.rooms() == []
    assert not mgr._room_snapshots and mgr.queued_bytes == 0


async def test_shutdown_flushes_then_closes_going_away() -> None:
    mgr = manager()
    _, transport = await connected(mgr)
    transport.stalled = True
    for i in range(10):
        await mgr.broadcast(str(i))
    shutdown = asyncio.ensure_future(mgr.shutdown(grace=2))
    await release_until(transport, 10)
    await asyncio.wait_for(shutdown, 2)
    assert transport.sent == [str(i) for i in range(10)]
    assert transport.closed == (1001, "server shutting down")


async def test_connect_context_accepts_and_always_cleans_up() -> None:
    mgr = manager()
    ws, transport = make()
    with pytest.raises(RuntimeError, match="boom"):
        async with mgr.connect(ws, "x") as conn:
            assert transport.accepted and isinstance(conn.ws, WebSocket)
            await conn.join("room")
            raise RuntimeError("boom")
    assert len(mgr) == 0 and mgr.rooms() == []


async def test_handler_close_delivers_what_was_queued_first() -> None:
    mgr = manager()
    conn, transport = await connected(mgr)
    transport.stalled = True
    for i in range(10):
        await conn.send(f"m{i}")
    closing = asyncio.ensure_future(conn.ws.close(1000, "bye"))
    await release_until(transport, 10)
    await asyncio.wait_for(closing, 2)
    assert transport.sent == [f"m{i}" for i in range(10)]
    assert transport.closed == (1000, "bye") and len(mgr) == 0


async def test_adding_a_connection_whose_client_already_left_is_an_ordinary_end() -> None:
    mgr = manager()
    ws, transport = make()
    await ws.accept()
    transport.push(0, 1000)  # the client leaves before the handler registers it
    with pytest.raises(ConnectionClosed):
        async with mgr.connect(ws):
            pass
    assert len(mgr) == 0
