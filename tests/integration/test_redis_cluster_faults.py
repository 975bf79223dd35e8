"""The Redis Cluster broker under faults that a real cluster makes hard to time: a
master's connection dropping with a presence removal on its way, and a slot table that
changes under one master only.

The "masters" are plain redis-servers (Redis 7 serves sharded pub/sub without cluster
mode) and the slot table is the test's own, handed to the broker in place of
``CLUSTER SLOTS``: so a test decides which master serves what, and when that changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from gobstopper import BrokerUnavailable, envelope
from gobstopper.brokers.redis import RedisClusterBroker
from gobstopper.brokers.redis import cluster as cluster_module
from gobstopper.brokers.redis.slots import SlotMap
from gobstopper.envelope import Envelope

from .helpers import wait_until
from .proxy import proxy
from .redis_server import RedisServer, require_redis

WAIT = 10.0
PREFIX = "f:"
LOW, HIGH = range(0, 8192), range(8192, REDIS_CLUSTER_HASH_SLOTS)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[RedisServer]]:
    program = require_redis()
    started: list[RedisServer] = []
    try:
        for _ in range(3):
            server = RedisServer(program)
            server.start()
            started.append(server)
        yield started
    finally:
        for server in started:
            server.cleanup()


@pytest.fixture(autouse=True)
def empty(servers: list[RedisServer]) -> None:
    """Each test starts on empty servers (they are shared by the module)."""
    for server in servers:
        with redis.Redis(port=server.port) as client:
            client.flushall()


def table(masters: dict[str, range]) -> SlotMap:
    owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    for address, slots in masters.items():
        for slot in slots:
            owners[slot] = address
    return SlotMap(tuple(owners))


def address(port: int) -> str:
    return f"127.0.0.1:{port}"


def name_in(prefix: str, stem: str, slots: range) -> str:
    """A name ``<stem><n>`` whose key ``<prefix><name>`` falls in ``slots``."""
    n = 0
    while key_slot(f"{prefix}{stem}{n}".encode()) not in slots:
        n += 1
    return f"{stem}{n}"


class Topology:
    """The slot table the broker reads, which the test changes.

    Attributes:
        changed: called once the broker has followed a new table (it does so as soon as
            it reads it), before any of its connections could have made progress.
    """

    def __init__(self, slots: SlotMap) -> None:
        self.slots = slots
        self._read = slots
        self.changed: Callable[[], None] = lambda: None

    async def read(self) -> SlotMap:
        if self.slots != self._read:
            self._read = self.slots
            asyncio.get_running_loop().call_soon(self.changed)
        return self.slots


@pytest.fixture
async def start(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Any]]:
    # A changed table is followed at once, not a second later.
    monkeypatch.setattr(cluster_module, "_REFRESH_EVERY_S", 0.0)
    started: list[RedisClusterBroker] = []

    async def make(topology: Topology, handler: Any = None, **options: Any) -> RedisClusterBroker:
        seed = next(iter(topology.slots.masters))
        broker = RedisClusterBroker(f"redis+cluster://{seed}", prefix=PREFIX, **options)
        monkeypatch.setattr(broker, "_read_slots", topology.read)
        await broker.start(handler or (lambda channel, data: None))
        assert broker.health().connected
        started.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in started:
            await broker.stop()


async def _is(coro: Any, expected: dict[str, str]) -> bool:
    return bool(await coro == expected)


async def test_a_removal_lost_with_its_masters_connection_is_made_when_it_is_back(
    servers: list[RedisServer], start: Any
) -> None:
    a, b = servers[0], servers[1]
    async with proxy(a.port) as front:
        topology = Topology(table({address(front.port): LOW, address(b.port): HIGH}))
        node = await start(topology)
        key = name_in(PREFIX + "presence:", "room:", LOW)
        node.presence_add(key, "bob")
        await wait_until(lambda: _is(node.presence(key), {"bob": node.node_id}), WAIT)
        # The connection to the key's master drops just as bob leaves: the removal is
        # queued while the master still counts as up, and fails on the way (the other
        # master keeps the writer going).
        front.go_down()
        node.presence_remove(key, "bob")
        await wait_until(lambda: not node.health().connected, WAIT)
        front.come_back()
        await wait_until(lambda: node.health().connected, WAIT)
        # Bob is gone, though this node (his owner) lives on.
        await wait_until(lambda: _is(node.presence(key), {}), WAIT, "bob is still present")


async def test_a_removal_that_failed_on_a_connected_master_is_made_later(
    servers: list[RedisServer], start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = servers[0], servers[1]
    topology = Topology(table({address(a.port): LOW, address(b.port): HIGH}))
    node = await start(topology, presence_ttl=0.6)
    key = name_in(PREFIX + "presence:", "room:", LOW)
    node.presence_add(key, "bob")
    node.presence_add(key, "ann")
    await wait_until(lambda: _is(node.presence(key), dict.fromkeys(["ann", "bob"], node.node_id)))
    # The next pipeline to that master fails (as one that times out does), while its
    # pub/sub connection stays up: nothing reconnects, nothing is restored.
    shard = node._shards[address(a.port)]
    pipeline = shard.client.pipeline
    failures = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)

        async def execute(*args: Any, **kwargs: Any) -> Any:
            failures.append(1)
            monkeypatch.setattr(shard.client, "pipeline", pipeline)
            raise ConnectionError("Timeout reading from socket")

        pipe.execute = execute
        return pipe

    monkeypatch.setattr(shard.client, "pipeline", failing)
    node.presence_remove(key, "bob")
    await wait_until(lambda: failures, WAIT)
    assert node.health().connected and shard.reconnects == 0
    await wait_until(lambda: _is(node.presence(key), {"ann": node.node_id}), WAIT, "bob stayed")
    # Ann's entry, never removed, is untouched.
    assert await node.presence_of(key, "ann") == node.node_id


async def test_a_removal_undone_before_it_failed_is_not_made(
    servers: list[RedisServer], start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = servers[0], servers[1]
    topology = Topology(table({address(a.port): LOW, address(b.port): HIGH}))
    node = await start(topology)
    key = name_in(PREFIX + "presence:", "room:", LOW)
    node.presence_add(key, "bob")
    await wait_until(lambda: _is(node.presence(key), {"bob": node.node_id}))
    shard = node._shards[address(a.port)]
    pipeline = shard.client.pipeline
    failed = asyncio.Event()

    def failing(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)

        async def execute(*args: Any, **kwargs: Any) -> Any:
            monkeypatch.setattr(shard.client, "pipeline", pipeline)
            # Bob comes back while his removal is on its way; then it fails.
            node.presence_add(key, "bob")
            failed.set()
            raise ConnectionError("Timeout reading from socket")

        pipe.execute = execute
        return pipe

    monkeypatch.setattr(shard.client, "pipeline", failing)
    node.presence_remove(key, "bob")
    await asyncio.wait_for(failed.wait(), WAIT)
    # The master drops this node's pub/sub connection: on reconnection the node writes
    # its presence there again, and makes the removals that waited for it.
    with redis.Redis(port=a.port) as admin:
        assert admin.client_kill_filter(_type="pubsub") == 1
    await wait_until(lambda: shard.reconnects == 1 and node.health().connected, WAIT)
    assert await node.presence(key) == {"bob": node.node_id}


async def test_slots_moving_on_one_master_leave_the_others_channels_flowing(
    servers: list[RedisServer], start: Any
) -> None:
    a, b, c = (address(s.port) for s in servers)
    topology = Topology(table({a: LOW, b: HIGH}))
    plain: list[int] = []
    kept: list[Envelope] = []

    def inbox(channel: str, data: bytes) -> None:
        if data.isdigit():
            plain.append(int(data))
        else:
            kept.append(envelope.decode(data))

    node = await start(topology, inbox)
    room = name_in(PREFIX, "room:", HIGH)  # on b, whose slots stay
    stream = name_in("", "s", HIGH)  # its keys are tagged {<stream>}
    await node.subscribe(room)
    refused: list[BaseException] = []
    sent = 0

    def head(payload: bytes) -> bytes:
        return envelope.encode_open(Envelope(node.node_id, payload, topic="t", channel="c"))

    async def messages() -> None:
        nonlocal sent
        while True:
            try:
                await node.publish(room, b"%d" % sent)
                sent += 1
            except BrokerUnavailable as exc:
                refused.append(exc)
            await asyncio.sleep(0.001)  # a steady flow, not a flood

    async def histories() -> None:
        n = 0
        while True:
            n += 1
            payload = b"h%d" % n
            try:
                await node.publish_with_history(room, head(payload), stream, payload, 1000, 60)
            except BrokerUnavailable as exc:
                refused.append(exc)
                await asyncio.sleep(0.001)

    async def probe() -> None:
        # Right after the change: b's channel and stream take publications.
        nonlocal sent, probed
        try:
            await node.publish(room, b"%d" % sent)
            sent += 1
            await node.publish_with_history(room, head(b"p"), stream, b"p", 1000, 60)
        except BrokerUnavailable as exc:
            refused.append(exc)
        else:
            probed = True

    probed = False
    topology.changed = lambda: senders.append(asyncio.ensure_future(probe()))

    senders = [asyncio.ensure_future(messages()), asyncio.ensure_future(histories())]
    try:
        await wait_until(lambda: len(plain) > 100 and len(kept) > 10, WAIT)
        # Half of a's slots move to a new master c; b's stay as they were.
        moved = table({a: range(0, 4096), c: range(4096, 8192), b: HIGH})
        topology.slots = moved
        node._refresh.set()
        await wait_until(lambda: node._slots == moved and node.health().connected, WAIT)
        mark = (len(plain), len(kept))
        await wait_until(lambda: len(plain) > mark[0] + 200 and len(kept) > mark[1] + 20, WAIT)
    finally:
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
    assert refused == []
    assert probed
    # Every message on b's channel arrived, in order: none fell into a gap.
    await wait_until(lambda: plain and plain[-1] == sent - 1, WAIT)
    assert plain == list(range(sent))
    assert [e.offset for e in kept] == list(range(1, len(kept) + 1))
