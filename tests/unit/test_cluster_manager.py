"""Two managers on one in-memory hub: every delivery mode crosses nodes (no sockets).

The same manager code runs on Redis in tests/integration/test_cluster.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gobstopper import Config, Connection, Delivery, WebSocketManager, envelope
from gobstopper.brokers import MemoryBroker, MemoryHub
from gobstopper.envelope import Envelope

from .fake_transport import FakeTransport, make


async def node(hub: MemoryHub | None = None, **settings: Any) -> WebSocketManager:
    broker = MemoryBroker(hub) if hub is not None else MemoryBroker()
    mgr = WebSocketManager(Config.load({}, **settings), broker)
    await mgr.start()
    return mgr


async def member(
    mgr: WebSocketManager, conn_id: str, *rooms: str
) -> tuple[Connection, FakeTransport]:
    ws, transport = make()
    await ws.accept()
    conn = mgr.add(ws, conn_id)
    for room in rooms:
        await conn.join(room)
    return conn, transport


async def test_broadcast_reaches_every_node_once() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    alice, ta = await member(a, "alice", "lobby")
    _, tb = await member(b, "bob", "lobby")
    _, tc = await member(b, "carol", "elsewhere")
    delivery = await a.broadcast("hi", room="lobby")
    assert isinstance(delivery, Delivery) and delivery == 1  # this node: alice
    assert delivery.published and delivery.error is None
    assert (ta.sent, tb.sent, tc.sent) == (["hi"], ["hi"], [])

    await a.broadcast(b"\x00bin", room="lobby", exclude=alice)
    await b.broadcast({"json": True})  # everyone, both nodes
    assert ta.sent == ["hi", '{"json":true}']
    assert tb.sent == ["hi", b"\x00bin", '{"json":true}']
    assert tc.sent == ['{"json":true}']


async def test_send_to_finds_the_connection_on_its_node() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    _, ta = await member(a, "alice")
    _, tb = await member(b, "bob")
    assert await a.send_to("bob", "psst") is True
    assert await a.send_to("nobody", "psst") is False
    assert (ta.sent, tb.sent) == ([], ["psst"])


async def test_cluster_presence_follows_joins_leaves_and_stops() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    alice, _ = await member(a, "alice", "lobby")
    await member(b, "bob", "lobby")
    assert await a.cluster_members("lobby") == ["alice", "bob"]
    assert await b.cluster_count() == 2
    assert a.members("lobby") == ["alice"]  # the local view stays local
    await alice.leave("lobby")
    assert await b.cluster_members("lobby") == ["bob"]
    await b.stop()
    assert await a.cluster_members("lobby") == []


async def test_a_predicate_cannot_travel_but_local_delivery_can_use_one() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    _, ta = await member(a, "alice", "lobby")
    _, tb = await member(b, "bob", "lobby")
    with pytest.raises(ValueError, match="local=True"):
        await a.broadcast("x", room="lobby", predicate=lambda c: True)
    delivery = await a.broadcast("x", room="lobby", predicate=lambda c: True, local=True)
    assert delivery == 1 and not delivery.published
    assert (ta.sent, tb.sent) == (["x"], [])


async def test_undecodable_or_oversized_remote_messages_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MemoryHub()
    a = await node(hub, max_message_bytes=1024, send_chunk_bytes=1024)
    _, ta = await member(a, "alice", "lobby")
    other = MemoryBroker(hub)  # another node, publishing what it likes
    await other.start(lambda channel, data: None)
    caplog.set_level(logging.WARNING, "gobstopper.broker")

    def note(payload: bytes, **fields: Any) -> bytes:
        return envelope.encode(Envelope("other", payload, **fields))

    for garbage in (
        b"",
        b"no envelope at all",
        b"\x02" + note(b"a later version")[1:],
        b"\x01\x93\x01\x02\x03",  # msgpack, but an array
        b"\x01\x81\xa6origin\x07",  # a field of the wrong type
        note(b"\xff\xfe"),  # text that is not UTF-8
        note(b"y" * 2048),  # over the message limit
        note(b"fine"),
    ):
        await other.publish("room:lobby", garbage)
    assert ta.sent == ["fine"]
    assert caplog.text.count("skipped a message") == 1  # throttled: one line for the lot
    assert "not logged" not in caplog.text
    assert "handler failed" not in caplog.text  # refused, not crashed on


async def test_alone_the_manager_never_touches_the_broker() -> None:
    mgr = await node()  # a private hub: nobody else to reach
    _, transport = await member(mgr, "alice", "lobby")
    delivery = await mgr.broadcast("hi", room="lobby")
    assert delivery == 1 and not delivery.published and delivery.error is None
    assert await mgr.send_to("bob", "x") is False
    assert await mgr.cluster_members("lobby") == ["alice"]
    assert isinstance(mgr.broker, MemoryBroker) and mgr.broker.hub.subscribers == {}
    assert transport.sent == ["hi"]


async def test_an_outside_publisher_names_recipients_in_the_envelope() -> None:
    """What docs/envelope.md promises a publisher in another language."""
    hub = MemoryHub()
    a = await node(hub)
    _, ta = await member(a, "alice", "lobby")
    _, tb = await member(a, "bob")
    other = MemoryBroker(hub)
    await other.start(lambda channel, data: None)
    await other.publish("all", envelope.encode(Envelope("php", b"lobby only", room="lobby")))
    await other.publish("all", envelope.encode(Envelope("php", b"bob only", target="bob")))
    await other.publish("all", envelope.encode(Envelope("php", b"all but bob", exclude=("bob",))))
    await other.publish("room:lobby", envelope.encode(Envelope("php", b"by channel")))
    assert ta.sent == ["lobby only", "all but bob", "by channel"]
    assert tb.sent == ["bob only"]


async def test_a_node_skips_its_own_envelopes_when_the_broker_hands_them_back() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    _, ta = await member(a, "alice", "lobby")
    _, tb = await member(b, "bob", "lobby")
    await a.broadcast("once", room="lobby")
    assert (ta.sent, tb.sent) == (["once"], ["once"])  # a's own copy came back, skipped
