"""Nothing missed across a reconnect: real granian servers (RSGI and ASGI), the Python
client, and a proxy that cuts the subscriber's TCP connection while messages flow."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gobstopper.client import Client, RecoveryFailed, Subscription

from .helpers import WAIT, wait_until
from .nats_server import NatsServer, nats_fixture
from .proxy import Proxy, proxy
from .redis_server import RedisServer, redis_fixture
from .servers import Server, server_fixture, start

history_server = server_fixture(
    "tests.apps.history:app", "Channels with history under granian RSGI and ASGI."
)

N = 10_000
CHUNK = 200  # publications in flight at once from the publisher (answered in order)


async def publish_numbers(client: Client, channel: str, start: int, stop: int) -> None:
    """Publish start..stop-1, in order: one connection's calls are handled in order."""
    for first in range(start, stop, CHUNK):
        await asyncio.gather(
            *(client.publish(channel, i) for i in range(first, min(first + CHUNK, stop)))
        )


async def collect(sub: Subscription, want: int, into: list[Any]) -> None:
    async for message in sub:
        into.append(message.data)
        if len(into) >= want:
            return


async def cut_while_flowing(
    p: Proxy, got: list[Any], publisher: asyncio.Future[None], times: int
) -> None:
    """Cut the subscriber's connection ``times`` times, spread over the flow."""
    for k in range(1, times + 1):
        mark = k * N // (times + 1)
        await wait_until(
            lambda mark=mark: len(got) >= mark or publisher.done(), WAIT * 3, f"{mark} received"
        )
        if publisher.done():
            break
        assert p.cut() >= 1  # the subscriber was connected: it dropped now


async def run_flow(
    publisher_url: str, subscriber_port: int, channel: str
) -> tuple[list[Any], Proxy, Client]:
    async with proxy(subscriber_port) as p:
        sub_url = f"ws://127.0.0.1:{p.port}/rpc"
        async with (
            Client(sub_url, backoff=0.02, max_backoff=0.2, timeout=WAIT) as subscriber,
            Client(publisher_url, timeout=WAIT) as publisher,
        ):
            sub = await subscriber.subscribe(channel, maxsize=N + 10)
            got: list[Any] = []
            consumer = asyncio.ensure_future(collect(sub, N, got))
            sending = asyncio.ensure_future(publish_numbers(publisher, channel, 0, N))
            await cut_while_flowing(p, got, sending, times=4)
            await asyncio.wait_for(sending, 120)
            await asyncio.wait_for(consumer, 120)
            return got, p, subscriber


async def test_every_message_once_and_in_order_across_dropped_connections(
    history_server: Server,
) -> None:
    got, p, subscriber = await run_flow(
        f"{history_server.ws}/rpc", history_server.port, "feed.numbers"
    )
    assert got == list(range(N))  # each once, in order: no gap, no duplicate
    assert p.cuts >= 3 and subscriber.connections >= 4  # it really reconnected


async def test_a_window_exceeded_while_away_is_said_plainly(history_server: Server) -> None:
    async with (
        proxy(history_server.port) as p,
        Client(
            f"ws://127.0.0.1:{p.port}/rpc", backoff=0.02, max_backoff=0.2, timeout=WAIT
        ) as subscriber,
        Client(f"{history_server.ws}/rpc", timeout=WAIT) as publisher,
    ):
        sub = await subscriber.subscribe("small.window")
        await publisher.publish("small.window", "before")
        assert (await sub.get(WAIT)).data == "before"
        connections = subscriber.connections
        p.go_down()  # away...
        await publish_numbers(publisher, "small.window", 0, 50)  # ...while 50 go by
        p.come_back()
        await asyncio.wait_for(subscriber.ready(connections + 1), WAIT)
        with pytest.raises(RecoveryFailed) as lost:
            await sub.get(WAIT)
        assert lost.value.position is not None and lost.value.position.offset == 51
        await publisher.publish("small.window", "after")
        message = await sub.get(WAIT)  # the subscription goes on, live
        assert (message.data, message.offset) == ("after", 52)


@pytest.fixture
def restartable() -> Iterator[list[Server]]:
    """A memory-store server whose test may restart it on the same port."""
    servers = [start("tests.apps.history:app", "rsgi")]
    yield servers
    for server in servers:
        server.stop()


async def test_a_restarted_store_is_a_new_epoch_and_said_plainly(
    restartable: list[Server],
) -> None:
    server = restartable[0]
    async with Client(
        f"{server.ws}/rpc", backoff=0.02, max_backoff=0.2, timeout=WAIT
    ) as subscriber:
        sub = await subscriber.subscribe("feed.restart")
        async with Client(f"{server.ws}/rpc", timeout=WAIT) as publisher:
            await publisher.publish("feed.restart", "old")
        old = await sub.get(WAIT)
        server.stop()
        restartable.append(start("tests.apps.history:app", "rsgi", port=server.port))
        await asyncio.wait_for(subscriber.ready(subscriber.connections + 1), WAIT)
        with pytest.raises(RecoveryFailed) as lost:
            await sub.get(WAIT)
        assert lost.value.position is not None
        assert lost.value.position.epoch != old.epoch and lost.value.position.offset == 0


redis_server = redis_fixture()


def history_hosts(broker_url: str) -> Iterator[tuple[Server, Server]]:
    """Two granian processes ("hosts", RSGI and ASGI) keeping history in one broker."""
    env = {"GOBSTOPPER_BROKER_URL": broker_url}
    a = start("tests.apps.history:app", "rsgi", env)
    try:
        b = start("tests.apps.history:app", "asgi", env)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.fixture
def redis_hosts(redis_server: RedisServer) -> Iterator[tuple[Server, Server]]:
    """Two hosts keeping history in one real Redis."""
    yield from history_hosts(redis_server.url)


async def test_across_two_hosts_on_redis_nothing_is_missed(
    redis_hosts: tuple[Server, Server],
) -> None:
    """Published on one host, received on the other through a connection cut again and
    again: every message once, in order (the offsets come from Redis, in one step with
    the publication)."""
    a, b = redis_hosts
    got, p, subscriber = await run_flow(f"{a.ws}/rpc", b.port, "feed.redis")
    assert got == list(range(N))
    assert p.cuts >= 3 and subscriber.connections >= 4


async def test_a_flushed_redis_is_a_new_epoch_and_said_plainly(
    redis_hosts: tuple[Server, Server], redis_server: RedisServer
) -> None:
    import redis.asyncio as aioredis

    a, b = redis_hosts
    async with (
        proxy(b.port) as p,
        Client(
            f"ws://127.0.0.1:{p.port}/rpc", backoff=0.02, max_backoff=0.2, timeout=WAIT
        ) as subscriber,
        Client(f"{a.ws}/rpc", timeout=WAIT) as publisher,
    ):
        sub = await subscriber.subscribe("feed.flush")
        await publisher.publish("feed.flush", "before")
        before = await sub.get(WAIT)
        connections = subscriber.connections
        p.go_down()
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            await raw.flushall()
        finally:
            await raw.aclose()
        await publisher.publish("feed.flush", "after the flush")
        p.come_back()
        await asyncio.wait_for(subscriber.ready(connections + 1), WAIT)
        with pytest.raises(RecoveryFailed) as lost:
            await sub.get(WAIT)
        assert lost.value.position is not None
        assert lost.value.position.epoch != before.epoch  # a new sequence
        await publisher.publish("feed.flush", "live")
        message = await sub.get(WAIT)
        assert message.data == "live" and message.epoch == lost.value.position.epoch


nats_server = nats_fixture()


@pytest.fixture
def nats_hosts(nats_server: NatsServer) -> Iterator[tuple[Server, Server]]:
    """Two hosts keeping history in one real NATS JetStream."""
    yield from history_hosts(nats_server.url)


async def test_across_two_hosts_on_nats_nothing_is_missed(
    nats_hosts: tuple[Server, Server],
) -> None:
    """As on Redis, with the offsets from JetStream streams, which republish each stored
    publication: every message once, in order, through cut after cut."""
    a, b = nats_hosts
    got, p, subscriber = await run_flow(f"{a.ws}/rpc", b.port, "feed.nats")
    assert got == list(range(N))
    assert p.cuts >= 3 and subscriber.connections >= 4
