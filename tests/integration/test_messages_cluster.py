"""Channels and events across two granian processes ("hosts") through a real Redis:
subscribers on one host get what is published on the other, events reach rooms, one
id and everyone across hosts, and presence of subscribers is cluster-wide."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gobstopper.client import ChannelMessage, Client

from .helpers import WAIT
from .redis_server import RedisServer, redis_fixture
from .rpc_peer import rpc_peers
from .servers import Server, start

APP = "examples.rpc:app"

redis_server = redis_fixture()


@pytest.fixture
def hosts(redis_server: RedisServer) -> Iterator[tuple[Server, Server]]:
    env = {"GOBSTOPPER_BROKER_URL": redis_server.url}
    a = start(APP, "rsgi", env)
    try:
        b = start(APP, "rsgi", env)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


async def test_channels_and_events_span_hosts(hosts: tuple[Server, Server]) -> None:
    a, b = hosts
    async with rpc_peers(a, 2) as (on_a, also_a), rpc_peers(b, 1) as (on_b,):
        ids = [(await x.call("rpc.info"))["result"]["id"] for x in (on_a, also_a, on_b)]
        await on_a.call("rpc.subscribe", ["news.*"])
        await on_a.call("rpc.subscribe", ["news.sport"])  # overlapping: still once
        await on_b.call("rpc.subscribe", ["news.**"])
        answer = await on_b.call("subscribers", ["news.*"])
        assert answer["result"] == [ids[0]]  # presence, asked on the other host

        # Published on host B: B's subscriber counts locally, A's gets it through Redis.
        assert (await on_b.call("announce", ["news.sport", "goal"]))["result"] == 1
        assert await on_a.push("rpc.message") == {"channel": "news.sport", "data": "goal"}
        assert await on_b.push("rpc.message") == {"channel": "news.sport", "data": "goal"}
        await also_a.call("announce", ["news.world", "rain"])
        assert (await on_a.push("rpc.message"))["data"] == "rain"
        assert (await on_b.push("rpc.message"))["data"] == "rain"

        # Events: a room with members on both hosts, one id on the other host, everyone.
        await on_a.call("join", {"room": "r"})
        await on_b.call("join", {"room": "r"})
        joined = await on_a.push("rpc.event")  # "everyone else in the room", across hosts
        assert (joined["event"], joined["from"]) == ("joined", ids[2])
        await on_b.call("say", {"room": "r", "text": "hi"})
        for x in (on_a, on_b):
            said = await x.push("rpc.event", "said")
            assert said["data"] == {"id": ids[2], "text": "hi"}

        assert (await on_b.call("whisper", {"to": ids[1], "text": "psst"}))["result"] is True
        assert (await also_a.push("rpc.event"))["data"] == {"id": ids[2], "text": "psst"}
        await also_a.call("shout", {"text": "all"})
        for x in (on_a, also_a, on_b):
            shouted = await x.push("rpc.event", "shouted")
            assert shouted["data"] == {"id": ids[1], "text": "all"}
        # Membership counts where and when an event arrives: A's "joined" reached host B
        # through Redis before or after on_b joined (it came before A's "shouted", which
        # followed it through Redis). Either is right; nothing else is.
        on_b.forget("joined")

        for x in (on_a, also_a, on_b):
            await x.nothing_more()  # each got everything once, nothing else


async def test_python_clients_on_two_hosts(hosts: tuple[Server, Server]) -> None:
    a, b = hosts
    async with (
        Client(f"{a.ws}/rpc", timeout=WAIT) as alice,
        Client(f"{b.ws}/rpc", timeout=WAIT, encoding="msgpack") as bob,
    ):
        async with await bob.subscribe("chat.*.typing") as typing:
            assert await alice.publish("chat.lobby.typing", {"who": "alice"}) == 0
            message = await typing.get(WAIT)
            assert message == ChannelMessage("chat.lobby.typing", {"who": "alice"})
        # Bob's host had no subscriber left, and so stopped hearing channel messages;
        # a new subscription there hears them again.
        async with await bob.subscribe("chat.lobby.*") as again:
            await alice.publish("chat.lobby.typing", {"who": "alice", "n": 2})
            assert (await again.get(WAIT)).data == {"who": "alice", "n": 2}


async def test_a_broker_outage_keeps_local_delivery(
    hosts: tuple[Server, Server], redis_server: RedisServer
) -> None:
    a, b = hosts
    async with rpc_peers(a, 1) as (on_a,), rpc_peers(b, 2) as (on_b, publisher):
        for x in (on_a, on_b):
            await x.call("rpc.subscribe", ["news.*"])
        redis_server.kill()
        # Redis is gone: host B's subscriber still gets B's publications, at once; host
        # A's misses them (at most once), and nobody's connection suffers.
        for n in range(3):
            assert (await publisher.call("announce", ["news.x", f"down{n}"]))["result"] == 1
            assert (await on_b.push("rpc.message"))["data"] == f"down{n}"
        await on_a.nothing_more()

        redis_server.start()
        # Host B's broker reconnects by itself (backoff up to 5 s): publish until A hears.
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            await publisher.call("announce", ["news.x", "back"])
            try:
                message = await asyncio.wait_for(on_a.push("rpc.message"), 0.5)
                break
            except asyncio.TimeoutError:
                assert asyncio.get_running_loop().time() < deadline, "no delivery after restart"
        assert message == {"channel": "news.x", "data": "back"}
