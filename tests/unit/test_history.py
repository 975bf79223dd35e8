"""The history store contract, run against every store: the memory one (no sockets), the
Redis one, the NATS JetStream one (a redis-server or nats-server on a free port, started
for this module when a test asks for it; without the server those tests skip, and fail
in CI), and the Redis Cluster one (the cluster the test run shares, started on first
use)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gobstopper.history import HistoryStore, MemoryHistory, Position, Window

from ..integration.helpers import wait_until
from ..integration.nats_server import NatsServer, nats_fixture
from ..integration.redis_server import RedisServer, redis_fixture

StoreFactory = Callable[[], HistoryStore]


redis_server = redis_fixture("module")
nats_server = nats_fixture("module")


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Any]:
    async for client in _client(redis_server):
        yield client


async def _client(server: RedisServer) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


def redis_store(client: Any, **options: Any) -> HistoryStore:
    """A Redis store with keys of its own (a new prefix) on the module's server."""
    from gobstopper.brokers.redis import RedisHistory

    return RedisHistory(client, prefix=f"test-{uuid.uuid4().hex[:8]}:", **options)


async def _nats_store(server: NatsServer) -> AsyncIterator[HistoryStore]:
    """A JetStream store with streams of its own (a new prefix) on the module's server."""
    import nats

    from gobstopper.brokers.nats import NatsHistory

    client = await nats.connect(server.url)
    try:
        js = client.jetstream()
        yield NatsHistory(lambda: js, prefix=f"test{uuid.uuid4().hex[:8]}", url=server.url)
    finally:
        await client.close()


async def _cluster_store() -> AsyncIterator[HistoryStore]:
    """The store of a cluster broker (it routes each stream to its master), keys apart."""
    from gobstopper.brokers.redis import RedisClusterBroker

    from ..integration.redis_cluster import shared_cluster

    broker = RedisClusterBroker(shared_cluster().url, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    await broker.start(lambda channel, data: None)
    try:
        assert broker.history is not None
        yield broker.history
    finally:
        await broker.stop()


@pytest.fixture(params=["memory", "redis", "nats", "redis-cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HistoryStore]:
    # Servers are asked for here only: the memory store's tests need none.
    if request.param == "redis":
        async for client in _client(request.getfixturevalue("redis_server")):
            yield redis_store(client)
    elif request.param == "nats":
        async for nats_store in _nats_store(request.getfixturevalue("nats_server")):
            yield nats_store
    elif request.param == "redis-cluster":
        async for cluster_store in _cluster_store():
            yield cluster_store
    else:
        yield MemoryHistory()


async def test_offsets_count_up_from_one_in_one_epoch(store: HistoryStore) -> None:
    positions = [await store.append("news", b"m%d" % i, 10, 60) for i in range(1, 4)]
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1
    other = await store.append("sport", b"x", 10, 60)
    assert other.offset == 1  # per channel


async def test_read_since_and_last(store: HistoryStore) -> None:
    for i in range(1, 6):
        await store.append("news", b"m%d" % i, 10, 60)
    window = await store.read("news", since=2)
    assert [(p.offset, p.data) for p in window.publications] == [(3, b"m3"), (4, b"m4"), (5, b"m5")]
    assert window.position.offset == 5 and window.first == 1
    assert [p.offset for p in (await store.read("news", since=2, limit=2)).publications] == [3, 4]
    assert [p.offset for p in (await store.read("news", limit=2)).publications] == [4, 5]
    assert (await store.read("news", limit=0)).publications == []
    assert (await store.read("news", since=5)).publications == []


async def test_only_the_last_size_are_kept(store: HistoryStore) -> None:
    for i in range(1, 8):
        await store.append("news", b"m%d" % i, 3, 60)
    window = await store.read("news")
    assert [p.offset for p in window.publications] == [5, 6, 7]
    assert window.first == 5
    epoch = window.position.epoch
    assert window.follows(Position(4, epoch))  # saw 4: 5, 6, 7 are all here
    assert window.follows(Position(7, epoch))  # saw everything
    assert not window.follows(Position(3, epoch))  # 4 fell out of the window
    assert not window.follows(Position(8, epoch))  # ahead of the stream: made up
    assert not window.follows(Position(6, epoch + "x"))  # another epoch


async def test_a_channel_never_published_has_a_position_to_start_from(store: HistoryStore) -> None:
    window = await store.read("quiet")
    assert window.publications == [] and window.position.offset == 0
    assert window.follows(window.position)
    first = await store.append("quiet", b"hello", 10, 60)
    assert first == Position(1, window.position.epoch)  # the epoch handed out still holds


async def test_a_new_store_has_new_epochs() -> None:
    a, b = MemoryHistory(), MemoryHistory()
    pa = await a.append("news", b"x", 10, 60)
    pb = await b.append("news", b"x", 10, 60)
    assert pa.offset == pb.offset == 1 and pa.epoch != pb.epoch
    window = await b.read("news")
    assert not window.follows(pa)  # a restarted store: a position from before is unusable


async def test_publications_expire_and_a_dropped_stream_comes_back_in_a_new_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("gobstopper.history.memory.time.monotonic", lambda: now[0])
    store = MemoryHistory()
    old = await store.append("news", b"a", 10, 5)
    await store.append("news", b"b", 10, 5)
    now[0] += 6
    window = await store.read("news")
    assert window.publications == [] and window.first == 3  # both expired
    assert not window.follows(Position(1, old.epoch))  # 2 is gone
    assert window.follows(Position(2, old.epoch))  # nothing missed after 2
    # Enough appends elsewhere for a sweep: the expired stream is forgotten...
    for i in range(1100):
        await store.append(f"other{i}", b"x", 1, 5)
    again = await store.append("news", b"c", 10, 5)
    # ...and comes back in a new epoch, so that no position from before can be taken
    # for one of the new sequence.
    assert again.epoch != old.epoch and again.offset == 1


async def test_redis_publications_expire_and_a_dropped_stream_comes_back_in_a_new_epoch(
    redis_client: Any,
) -> None:
    # Redis's own clock: a short real ttl, and waits on the condition.
    store = redis_store(redis_client, meta_ttl=1.5)
    old = await store.append("news", b"a", 10, 0.2)
    await store.append("news", b"b", 10, 0.2)
    window = await until(store, lambda w: w.publications == [])
    assert window.first == 3 and window.position == Position(2, old.epoch)  # both expired
    assert not window.follows(Position(1, old.epoch))  # 2 is gone
    assert window.follows(Position(2, old.epoch))  # nothing missed after 2
    # A quiet period longer than the meta's TTL: the stream is forgotten, and comes back
    # in a new epoch, so that no position from before can be taken for a new one.
    window = await until(store, lambda w: w.position.epoch != old.epoch)
    assert window.position.offset == 0 and not window.follows(Position(2, old.epoch))
    again = await store.append("news", b"c", 10, 5)
    assert again == Position(1, window.position.epoch)


async def test_redis_publications_expire_one_by_one(redis_client: Any) -> None:
    store = redis_store(redis_client)
    await store.append("news", b"a", 10, 0.3)
    await store.append("news", b"b", 10, 30)
    window = await until(store, lambda w: len(w.publications) < 2)
    # b, appended with a longer ttl, stays: each publication has its own expiry.
    assert [(p.offset, p.data) for p in window.publications] == [(2, b"b")]
    assert window.first == 2 and window.follows(Position(1, window.position.epoch))


async def until(store: HistoryStore, condition: Callable[[Window], bool]) -> Window:
    """Read ``news`` until ``condition`` holds (at most 5 seconds: Redis's own clock)."""

    async def check() -> Window | None:
        window = await store.read("news")
        return window if condition(window) else None

    found: Window = await wait_until(check, 5, "the condition on news")
    return found


def test_window_follows_checks_every_bound() -> None:
    window = Window([], Position(10, "e"), first=6)
    assert [window.follows(Position(n, "e")) for n in (4, 5, 6, 10, 11)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert not window.follows(Position(-1, "e"))
