"""Channel history on a real Redis: what only a shared server shows (several nodes, a
flush, an outage). The store contract itself runs in tests/unit/test_history.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gobstopper import BrokerUnavailable, envelope
from gobstopper.envelope import Envelope
from gobstopper.history import Position

from .helpers import wait_until
from .redis_server import RedisServer, redis_fixture

WAIT = 10.0


redis = redis_fixture()


@pytest.fixture
async def clients(redis: RedisServer) -> AsyncIterator[Callable[[], Any]]:
    """A factory of Redis clients (one per node), closed afterwards."""
    import redis.asyncio as aioredis

    made: list[Any] = []

    def make() -> Any:
        made.append(aioredis.Redis.from_url(redis.url))
        return made[-1]

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


class Inbox:
    """The envelopes a node received, decoded."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def __call__(self, channel: str, data: bytes) -> None:
        self.envelopes.append(envelope.decode(data))


@pytest.fixture
async def brokers(redis: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """A factory of started Redis brokers (nodes): ``await make(inbox)``."""
    from gobstopper.brokers.redis import RedisBroker

    started: list[RedisBroker] = []

    async def make(inbox: Inbox | None = None) -> RedisBroker:
        broker = RedisBroker(redis.url)
        await broker.start(inbox or Inbox())
        started.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in started:
            await broker.stop()


def note(origin: str, payload: bytes) -> bytes:
    return envelope.encode_open(Envelope(origin, payload, topic="t", channel="news"))


async def test_two_nodes_appending_at_once_agree_on_one_order(clients: Any) -> None:
    from gobstopper.brokers.redis import RedisHistory

    a, b = RedisHistory(clients()), RedisHistory(clients())

    async def append(store: RedisHistory, name: bytes, count: int) -> list[Position]:
        return [await store.append("news", name + b"%d" % i, 1000, 60) for i in range(count)]

    # Four appenders per node, 50 appends each, all at once.
    names = [b"a%d-" % task for task in range(4)] + [b"b%d-" % task for task in range(4)]
    stores = [a] * 4 + [b] * 4
    results = await asyncio.gather(*map(append, stores, names, [50] * 8))
    positions = [p for ps in results for p in ps]
    assert sorted(p.offset for p in positions) == list(range(1, 401))  # no duplicate, no gap
    assert len({p.epoch for p in positions}) == 1
    # Each append's data is at the offset it was given, for both nodes' readers.
    expected = {
        p.offset: name + b"%d" % i
        for name, ps in zip(names, results, strict=True)
        for i, p in enumerate(ps)
    }
    for store in (a, b):
        window = await store.read("news")
        assert [(p.offset, p.data) for p in window.publications] == sorted(expected.items())
        assert window.position == Position(400, positions[0].epoch)


async def test_a_flush_or_a_deletion_starts_a_new_epoch(clients: Any) -> None:
    from gobstopper.brokers.redis import RedisHistory

    client = clients()
    store = RedisHistory(client)
    old = await store.append("news", b"a", 10, 60)
    await client.flushall()
    window = await store.read("news")
    assert window.position.epoch != old.epoch and window.position.offset == 0
    assert not window.follows(old)
    new = await store.append("news", b"b", 10, 60)
    assert new == Position(1, window.position.epoch)
    # The meta hash deleted (or expired) alone: the stream left behind is dropped too.
    await client.delete("gobstopper:history-meta:news")
    window = await store.read("news")
    assert window.position.epoch != new.epoch and window.publications == []
    assert not window.follows(new)
    assert await store.append("news", b"c", 10, 60) == Position(1, window.position.epoch)


async def test_positioned_envelopes_reach_every_node_in_offset_order(brokers: Any) -> None:
    a_in, c_in = Inbox(), Inbox()
    a, b, c = await brokers(a_in), await brokers(), await brokers(c_in)
    for node in (a, c):
        await node.subscribe("room:news")

    async def publish(node: Any, n: int) -> tuple[Position, bytes]:
        payload = b"%s-%d" % (node.node_id[:6].encode(), n)
        head = note(node.node_id, payload)
        position = await node.publish_with_history("room:news", head, "news", payload, 2000, 60)
        return position, payload

    # Two publishers, 500 publications each, all in flight at once.
    sent = await asyncio.gather(*(publish(node, n) for n in range(500) for node in (a, b)))
    by_offset = {position.offset: payload for position, payload in sent}
    assert sorted(by_offset) == list(range(1, 1001))
    epoch = sent[0][0].epoch
    for inbox in (c_in, a_in):  # a gets its own positioned publications back as well
        await wait_until(lambda inbox=inbox: len(inbox.envelopes) >= 1000, WAIT)
        got = inbox.envelopes
        assert [e.offset for e in got] == list(range(1, 1001))  # strictly in offset order
        assert {e.epoch for e in got} == {epoch}
        assert all(e.payload == by_offset[e.offset] for e in got)
        assert all(e.topic == "t" and e.channel == "news" for e in got)
    window = await c.history.read("news", since=998)
    assert [(p.offset, p.data) for p in window.publications] == [
        (999, by_offset[999]),
        (1000, by_offset[1000]),
    ]


async def test_a_publication_with_history_keeps_its_place_among_the_nodes_writes(
    brokers: Any,
) -> None:
    b_in = Inbox()
    a, b = await brokers(), await brokers(b_in)
    await b.subscribe("room:news")
    plain = envelope.encode(Envelope(a.node_id, b"before"))
    await a.publish("room:news", plain)  # queued on the writer, not yet written
    await a.publish_with_history("room:news", note(a.node_id, b"kept"), "news", b"kept", 10, 60)
    await wait_until(lambda: len(b_in.envelopes) == 2, WAIT)
    assert [e.payload for e in b_in.envelopes] == [b"before", b"kept"]
    assert b_in.envelopes[0].offset is None and b_in.envelopes[1].offset == 1


async def test_redis_down_refuses_with_nothing_half_done(redis: RedisServer, brokers: Any) -> None:
    c_in = Inbox()
    a, c = await brokers(), await brokers(c_in)
    await c.subscribe("room:news")
    first = await a.publish_with_history("room:news", note(a.node_id, b"1"), "news", b"1", 10, 60)
    await wait_until(lambda: len(c_in.envelopes) == 1, WAIT)
    redis.kill()
    # Whether a has noticed yet or not, the publication is refused and counted.
    with pytest.raises(BrokerUnavailable) as info:
        await a.publish_with_history("room:news", note(a.node_id, b"2"), "news", b"2", 10, 60)
    assert f"127.0.0.1:{redis.port}" in str(info.value)
    await wait_until(lambda: not a.health().connected, WAIT)
    with pytest.raises(BrokerUnavailable):
        await a.publish_with_history("room:news", note(a.node_id, b"3"), "news", b"3", 10, 60)
    assert a.health().dropped >= 2
    with pytest.raises(BrokerUnavailable):
        await a.history.append("news", b"4", 10, 60)
    with pytest.raises(BrokerUnavailable):
        await a.history.read("news")
    assert len(c_in.envelopes) == 1
    # Back, empty (as after a crash without persistence): a new epoch from offset 1, and
    # nothing of what was refused shows up anywhere.
    redis.start()
    await wait_until(lambda: a.health().connected and c.health().connected, WAIT)
    again = await a.publish_with_history("room:news", note(a.node_id, b"5"), "news", b"5", 10, 60)
    assert again.offset == 1 and again.epoch != first.epoch
    await wait_until(lambda: len(c_in.envelopes) == 2, WAIT)
    assert [(e.payload, e.offset) for e in c_in.envelopes] == [(b"1", 1), (b"5", 1)]
    window = await c.history.read("news")
    assert [(p.offset, p.data) for p in window.publications] == [(1, b"5")]


async def test_a_burst_of_reads_waits_for_connections_instead_of_failing(clients: Any) -> None:
    """A thousand subscribers resuming at once each read the store: more than the
    client's pool holds (100 connections), which refuses past it."""
    from gobstopper.brokers.redis import RedisHistory

    store = RedisHistory(clients())
    await store.append("news", b"x", 10, 60)
    windows = await asyncio.gather(*(store.read("news", since=0) for _ in range(1000)))
    assert all(len(w.publications) == 1 for w in windows)
