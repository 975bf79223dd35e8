"""Nothing missed across a reconnect: real granian servers (RSGI and ASGI), the Python
client, and a proxy that cuts the subscriber's TCP connection while messages flow."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gobstopper.client import Client, RecoveryFailed, Subscription

from .helpers import WAIT, wait_until
from .proxy import Proxy, proxy
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
