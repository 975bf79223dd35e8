"""One contract, every broker: the same tests against the memory broker, a real Redis
and a real NATS (and any kind registered in ``KINDS``).

Each test starts two nodes (two brokers sharing a hub, or two clients of one server
started for the test on a free port) and checks what a manager relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gobstopper import BrokerUnavailable, ConfigError
from gobstopper.brokers import Broker, MemoryBroker, MemoryHub, broker_from_url, check_broker_url

from .helpers import wait_until
from .nats_server import NatsServer, require_nats
from .redis_cluster import shared_cluster
from .redis_server import RedisServer, require_redis

WAIT = 5.0


class Inbox:
    """What a node received, with a way to wait for it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()

    def __call__(self, channel: str, data: bytes) -> None:
        self.messages.append((channel, data))
        self.changed.set()

    async def wait_for(self, count: int) -> list[tuple[str, bytes]]:
        async def until() -> None:
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), WAIT)
        return self.messages


#: Each broker kind the contract runs against: a factory of an async context manager
#: that yields ``(make broker, the medium's handle)`` (a server object, or None).
Medium = Callable[[], Any]
KINDS: dict[str, Medium] = {}


def kind(name: str) -> Callable[[Medium], Medium]:
    def register(medium: Medium) -> Medium:
        KINDS[name] = medium
        return medium

    return register


@kind("memory")
@contextlib.asynccontextmanager
async def _memory() -> AsyncIterator[tuple[Callable[..., Broker], Any]]:
    hub = MemoryHub()
    yield (lambda **options: MemoryBroker(hub)), None


@kind("redis")
@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[tuple[Callable[..., Broker], Any]]:
    redis = RedisServer(require_redis())
    redis.start()
    try:
        from gobstopper.brokers.redis import RedisBroker

        yield (lambda **options: RedisBroker(redis.url, **options)), redis
    finally:
        redis.cleanup()


@kind("nats")
@contextlib.asynccontextmanager
async def _nats() -> AsyncIterator[tuple[Callable[..., Broker], Any]]:
    server = NatsServer(require_nats())
    server.start()
    try:
        from gobstopper.brokers.nats import NatsBroker

        yield (lambda **options: NatsBroker(server.url, **options)), server
    finally:
        server.cleanup()


@kind("redis-cluster")
@contextlib.asynccontextmanager
async def _redis_cluster() -> AsyncIterator[tuple[Callable[..., Broker], Any]]:
    cluster = shared_cluster()
    from gobstopper.brokers.redis import RedisClusterBroker

    # The cluster is shared by the test run: each test keeps to keys of its own.
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    yield (lambda **options: RedisClusterBroker(cluster.url, prefix=prefix, **options)), cluster


@pytest.fixture(params=list(KINDS))
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """A factory of started nodes on one shared medium: ``await make(inbox)``."""
    async for make in _nodes(request.param):
        yield make


@pytest.fixture
async def redis_nodes() -> AsyncIterator[Callable[..., Any]]:
    """The same, on Redis only: for what only a separate server can show."""
    async for make in _nodes("redis"):
        yield make


async def _nodes(name: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[Broker] = []
    async with KINDS[name]() as (new, medium):

        async def make(inbox: Inbox | None = None, **options: Any) -> Broker:
            broker: Broker = new(**options)
            await broker.start(inbox or Inbox())
            started.append(broker)
            return broker

        make.medium = medium  # type: ignore[attr-defined]
        make.redis = medium  # type: ignore[attr-defined]
        try:
            yield make
        finally:
            for broker in started:
                await broker.stop()


async def test_publish_reaches_subscribers_only_with_bytes_intact(nodes: Any) -> None:
    a_in, b_in, c_in = Inbox(), Inbox(), Inbox()
    a, b, c = await nodes(a_in), await nodes(b_in), await nodes(c_in)
    assert a.health().connected and b.health().connected
    await b.subscribe("room:x")
    await c.subscribe("room:y")
    payload = b'{"o":"n"}\n\x00\xff binary \n and text'
    await a.publish("room:x", payload)
    await c.publish("room:y", b"marker")  # c's own publish comes back to c
    assert await b_in.wait_for(1) == [("room:x", payload)]
    assert await c_in.wait_for(1) == [("room:y", b"marker")]
    assert a_in.messages == []  # not subscribed: nothing


async def test_messages_of_one_publisher_arrive_in_order(nodes: Any) -> None:
    b_in = Inbox()
    a, b = await nodes(), await nodes(b_in)
    await b.subscribe("room:x")
    for i in range(300):
        await a.publish("room:x", b"%d" % i)
    got = await b_in.wait_for(300)
    assert [int(d) for _, d in got] == list(range(300))


async def test_unsubscribe_stops_delivery(nodes: Any) -> None:
    b_in = Inbox()
    a, b = await nodes(), await nodes(b_in)
    await b.subscribe("room:x")
    await b.subscribe("room:z")
    await b.unsubscribe("room:x")
    await a.publish("room:x", b"not for b")
    await a.publish("room:z", b"marker")  # after the other: once it is here, so is that
    assert await b_in.wait_for(1) == [("room:z", b"marker")]


async def test_a_failing_handler_does_not_stop_delivery(nodes: Any) -> None:
    inbox = Inbox()

    def handler(channel: str, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("handler failed")
        inbox(channel, data)

    a = await nodes()
    b = await nodes()
    await b.stop()
    await b.start(handler)
    await b.subscribe("room:x")
    await a.publish("room:x", b"boom")
    await a.publish("room:x", b"after")
    assert await inbox.wait_for(1) == [("room:x", b"after")]


async def test_presence_across_nodes(nodes: Any) -> None:
    a, b = await nodes(), await nodes()
    a.presence_add("room:x", "alice")
    b.presence_add("room:x", "bob")
    b.presence_add("room:y", "bob")

    async def members() -> dict[str, str]:
        return await a.presence("room:x")

    await wait_until(lambda: _has(members(), {"alice": a.node_id, "bob": b.node_id}), WAIT)
    assert await b.presence_of("room:x", "alice") == a.node_id
    assert await b.presence_of("room:x", "carol") is None
    b.presence_remove("room:x", "bob")
    await wait_until(lambda: _has(members(), {"alice": a.node_id}), WAIT)
    assert await a.presence("room:y") == {"bob": b.node_id}
    await b.stop()  # a node that stops withdraws its members
    assert await a.presence("room:y") == {}


async def test_live_nodes_are_read_at_once(nodes: Any) -> None:
    a, b = await nodes(), await nodes()
    ids = {a.node_id, b.node_id, "a-node-that-never-was"}
    await wait_until(lambda: _is(a.live_nodes(ids), {a.node_id, b.node_id}), WAIT)
    await b.stop()  # a node that stops is dead at once
    assert await a.live_nodes(ids) == {a.node_id}
    assert await a.live_nodes(()) == set()


async def _is(coro: Any, expected: set[str]) -> bool:
    return bool(await coro == expected)


async def _has(coro: Any, expected: dict[str, str]) -> bool:
    return bool(await coro == expected)


async def test_publish_before_start_is_refused(nodes: Any) -> None:
    started = await nodes()
    await started.stop()
    with pytest.raises(BrokerUnavailable):
        await started.publish("room:x", b"x")


async def test_redis_node_that_dies_loses_its_members_within_the_ttl(redis_nodes: Any) -> None:
    nodes = redis_nodes
    a = await nodes(presence_ttl=0.5)
    b = await nodes(presence_ttl=0.5)
    b.presence_add("room:x", "bob")
    await wait_until(lambda: _has(a.presence("room:x"), {"bob": b.node_id}), WAIT)
    # b dies: its tasks stop without withdrawing anything, as in a killed process.
    for task in b._tasks:  # type: ignore[attr-defined]
        task.cancel()
    started = time.monotonic()
    await wait_until(lambda: _has(a.presence("room:x"), {}), timeout=3)
    assert time.monotonic() - started < 0.5 + 0.5  # within the TTL (and a margin)


async def test_redis_outage_is_reported_then_recovered(redis_nodes: Any) -> None:
    nodes = redis_nodes
    b_in = Inbox()
    a, b = await nodes(), await nodes(b_in)
    await b.subscribe("room:x")
    b.presence_add("room:x", "bob")
    nodes.redis.kill()
    await wait_until(lambda: not a.health().connected and not b.health().connected, WAIT)
    assert a.health().last_error
    with pytest.raises(BrokerUnavailable):
        await a.publish("room:x", b"lost")
    with pytest.raises(BrokerUnavailable):
        await a.presence("room:x")
    nodes.redis.start()  # same port, empty: subscriptions and presence must come back
    await wait_until(lambda: a.health().connected and b.health().connected, timeout=10)
    assert b.health().reconnects == 1
    await a.publish("room:x", b"back")
    assert await b_in.wait_for(1) == [("room:x", b"back")]
    assert await a.presence("room:x") == {"bob": b.node_id}
    assert a.health().dropped >= 1


def test_broker_urls_are_checked_at_start_up() -> None:
    assert check_broker_url("memory://") == "memory://"
    assert isinstance(broker_from_url("memory://"), MemoryBroker)
    for bad, words in [
        ("kafka://x", "unknown broker 'kafka'"),
        ("redis://", "needs a host"),
        ("redis://host:notaport/0", "not a valid URL"),
        ("redis://host:6379/zero", "database must be a number"),
        ("memory://somewhere", "takes no address"),
        ("redis+cluster://", "at least one host:port"),
        ("redis+cluster://:pw@/0", "at least one host:port"),
        ("redis+cluster://a:7000,b:port", "bad port in 'b:port'"),
        ("redis+cluster://a:7000,b:7001/1", "only database 0"),
        ("rediss+cluster://a:7000/zero", "only database 0"),
    ]:
        with pytest.raises(ConfigError) as info:
            check_broker_url(bad)
        # The value is named, its password masked.
        shown = bad.replace(":pw@", ":***@")
        assert "GOBSTOPPER_BROKER_URL" in str(info.value) and shown in str(info.value)
        assert ":pw@" not in str(info.value)
        assert words in str(info.value)


def test_redis_cluster_urls_name_their_masters() -> None:
    from gobstopper.brokers.cluster_url import parse_cluster_url

    for good in ("redis+cluster://a:7000,b:7001", "rediss+cluster://u:pw@a:7000,[::1]:7001/0"):
        assert check_broker_url(good) == good
    parsed = parse_cluster_url("rediss+cluster://u:p%40ss@a:7000,[::1]:7001,c/0")
    assert parsed.nodes == [("a", 7000), ("::1", 7001), ("c", 6379)]
    assert (parsed.username, parsed.password, parsed.tls) == ("u", "p@ss", True)
    pytest.importorskip("redis")
    from gobstopper.brokers.redis import RedisClusterBroker

    assert isinstance(broker_from_url("redis+cluster://a:7000,b:7001"), RedisClusterBroker)


def test_redis_url_password_is_not_reported() -> None:
    pytest.importorskip("redis")
    from gobstopper.brokers.redis import redact
    from gobstopper.brokers.redis.cluster import redact_cluster

    assert redact_cluster("redis+cluster://:s3cret@a:1,b:2") == "redis+cluster://:***@a:1,b:2"
    assert redact_cluster("redis+cluster://a:1,b:2/0") == "redis+cluster://a:1,b:2/0"

    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://user:s3cret@host/1") == "redis://user:***@host/1"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"
