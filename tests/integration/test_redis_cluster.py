"""The Redis Cluster broker: what only a cluster shows (the contract itself runs in
test_brokers.py). Channels spread over the masters by slot; one master lost leaves the
others' channels flowing, and is followed when it is back; presence of a crashed node
goes within its TTL on every master."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.crc import key_slot

from gobstopper import BrokerUnavailable, envelope
from gobstopper.envelope import Envelope

from .helpers import wait_until
from .redis_cluster import RedisCluster, cluster_fixture

WAIT = 10.0

cluster = cluster_fixture("module")


class Inbox:
    """What a node received, per channel."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, channel: str, data: bytes) -> None:
        self.messages.append((channel, data))

    def count(self, channel: str) -> int:
        return sum(1 for c, _ in self.messages if c == channel)


@pytest.fixture
async def nodes(cluster: RedisCluster) -> AsyncIterator[Callable[..., Any]]:
    """A factory of started cluster brokers with a prefix of this test's own."""
    from gobstopper.brokers.redis import RedisClusterBroker

    prefix = f"t{uuid.uuid4().hex[:6]}:"
    started: list[RedisClusterBroker] = []

    async def make(inbox: Any = None, **options: Any) -> RedisClusterBroker:
        broker = RedisClusterBroker(cluster.url, prefix=prefix, **options)
        await broker.start(inbox if inbox is not None else Inbox())
        started.append(broker)
        return broker

    make.prefix = prefix  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for broker in started:
            await broker.stop()


def on_master(cluster: RedisCluster, prefix: str, stem: str, master: int) -> str:
    """A name ``<stem><n>`` whose key ``<prefix><name>`` lives on ``master``, checked with
    Redis itself (``CLUSTER KEYSLOT`` and the slot map)."""
    for n in itertools.count():
        name = f"{stem}{n}"
        slot = key_slot((prefix + name).encode())
        if cluster.slot_owner(slot) == master:
            assert cluster.keyslot(prefix + name) == slot
            return name
    raise AssertionError("unreachable")


async def test_channels_on_different_masters_each_carry_their_messages_there(
    cluster: RedisCluster, nodes: Any
) -> None:
    b_in = Inbox()
    a, b = await nodes(), await nodes(b_in)
    rooms = [on_master(cluster, nodes.prefix, "room:", i) for i in range(3)]
    for room in rooms:
        await b.subscribe(room)
    for i in range(3):
        # Sharded: each master knows only its own channels.
        listed = cluster.nodes[i].command("pubsub", "shardchannels", nodes.prefix + "*")
        assert listed.split() == [nodes.prefix + rooms[i]]
    for n in range(50):
        for room in rooms:
            await a.publish(room, b"%d" % n)
    await wait_until(lambda: len(b_in.messages) == 150, WAIT)
    for room in rooms:
        assert [d for c, d in b_in.messages if c == room] == [b"%d" % n for n in range(50)]


async def test_presence_of_a_crashed_node_goes_within_the_ttl_on_every_master(
    cluster: RedisCluster, nodes: Any
) -> None:
    a = await nodes(presence_ttl=0.5)
    b = await nodes(presence_ttl=0.5)
    keys = [on_master(cluster, nodes.prefix + "presence:", "room:", i) for i in range(3)]
    for key in keys:
        b.presence_add(key, "bob")
    for key in keys:
        await wait_until(lambda key=key: _is(a.presence(key), {"bob": b.node_id}), WAIT)
    # b dies: its tasks stop without withdrawing anything, as in a killed process.
    _crash(b)
    started = time.monotonic()
    for key in keys:
        await wait_until(lambda key=key: _is(a.presence(key), {}), 3)
    assert time.monotonic() - started < 0.5 + 0.5  # within the TTL (and a margin)


async def test_history_reaches_every_node_in_offset_order_across_masters(
    cluster: RedisCluster, nodes: Any
) -> None:
    c_in: list[Envelope] = []
    a, b = await nodes(), await nodes()
    c = await nodes(lambda channel, data: c_in.append(envelope.decode(data)))
    # The stream's keys on one master, the channel on another: the bus carries it.
    room = on_master(cluster, nodes.prefix, "room:", 0)
    stream = on_master(cluster, "", "s", 1)  # its keys are tagged {<stream>}
    assert cluster.keyslot(f"{nodes.prefix}history:{{{stream}}}") == key_slot(stream.encode())
    await c.subscribe(room)
    plain = envelope.encode(Envelope(a.node_id, b"before"))
    await a.publish(room, plain)

    async def publish(node: Any, n: int) -> None:
        payload = b"%d" % n
        head = envelope.encode_open(Envelope(node.node_id, payload, topic="t", channel="c"))
        await node.publish_with_history(room, head, stream, payload, 1000, 60)

    await asyncio.gather(*(publish(node, n) for n in range(100) for node in (a, b)))
    await wait_until(lambda: len(c_in) == 201, WAIT)
    assert c_in[0].payload == b"before"  # a's plain message first, as a sent it
    assert [e.offset for e in c_in[1:]] == list(range(1, 201))
    window = await c.history.read(stream, since=198)
    assert [p.offset for p in window.publications] == [199, 200]


async def test_a_lost_master_stops_its_channels_only_and_is_followed_when_back(
    cluster: RedisCluster, nodes: Any
) -> None:
    b_in = Inbox()
    a, b = await nodes(), await nodes(b_in)
    rooms = [on_master(cluster, nodes.prefix, "room:", i) for i in range(3)]
    for room in rooms:
        await b.subscribe(room)
    lost = rooms[2]
    key = on_master(cluster, nodes.prefix + "presence:", "room:", 2)
    b.presence_add(key, "bob")
    await wait_until(lambda: _is(a.presence(key), {"bob": b.node_id}), WAIT)
    refused = 0

    async def traffic() -> None:
        nonlocal refused
        while True:
            for room in rooms:
                try:
                    await a.publish(room, b"x")
                except BrokerUnavailable:
                    refused += 1
            await asyncio.sleep(0.005)

    sender = asyncio.ensure_future(traffic())
    try:
        await wait_until(lambda: all(b_in.count(r) > 10 for r in rooms), WAIT)
        cluster.kill(2)
        await wait_until(lambda: not a.health().connected and not b.health().connected, WAIT)
        assert f"127.0.0.1:{cluster.nodes[2].port}" in (a.health().last_error or "")
        # The other masters' channels go on: many more messages on each.
        counts = [b_in.count(r) for r in rooms]
        await wait_until(
            lambda: all(b_in.count(r) > counts[i] + 50 for i, r in enumerate(rooms[:2])), WAIT
        )
        await wait_until(lambda: refused > 10, WAIT)
        assert b_in.count(lost) == counts[2]
        assert a.health().dropped >= refused
        with pytest.raises(BrokerUnavailable):
            await a.presence(key)
        assert await a.presence(on_master(cluster, nodes.prefix + "presence:", "room:", 0)) == {}
        # Back on its port, empty: its channels are subscribed again, presence rewritten.
        cluster.restart(2)
        await wait_until(lambda: a.health().connected and b.health().connected, WAIT)
        assert b.health().reconnects >= 1
        before = b_in.count(lost)
        await wait_until(lambda: b_in.count(lost) > before + 20, 5)
        assert await a.presence(key) == {"bob": b.node_id}
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        if not cluster.alive(2):
            cluster.restart(2)


def _crash(broker: Any) -> None:
    for task in broker._tasks:
        task.cancel()
    for shard in broker._shards.values():
        shard.task.cancel()


async def _is(coro: Any, expected: dict[str, str]) -> bool:
    return bool(await coro == expected)
