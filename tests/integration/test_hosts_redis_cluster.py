"""Two hosts on a three-master Redis Cluster: rooms, channels matched by pattern, events
to one connection and presence span the hosts; with one master down, rooms and channels
whose slots the other masters serve keep flowing, and once it is back, its own flow
again within seconds."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from functools import partial

import pytest
from redis.crc import key_slot

from .helpers import wait_until
from .hosts import Ticks, data, rooms_channels_events_and_presence, text, two_hosts
from .redis_cluster import RedisCluster, cluster_fixture
from .rpc_peer import rpc_peers
from .servers import Server

#: Within how long a master's rooms carry messages again once it is back.
BACK_S = 10.0
#: The longest pause the other masters' rooms and channels may have when one goes.
STALL_S = 1.0
#: The broker's key prefix (the default: the example does not set one).
PREFIX = "gobstopper:"
#: Where every message-layer channel crosses between nodes on Redis: one room's channel.
CHANNELS_KEY = PREFIX + "room:channel subscribers"

# A cluster of this module's own: a test kills one of its masters.
cluster = cluster_fixture("module")


@pytest.fixture
def hosts(cluster: RedisCluster) -> Iterator[tuple[Server, Server]]:
    env = {"GOBSTOPPER_BROKER_URL": cluster.url}
    with two_hosts(env, env) as servers:
        yield servers


async def test_rooms_channels_events_and_presence_span_hosts(
    hosts: tuple[Server, Server],
) -> None:
    await rooms_channels_events_and_presence(*hosts)


def room_on(cluster: RedisCluster, master: int) -> str:
    """A room name whose channel lives on ``master``."""
    for n in itertools.count():
        if cluster.slot_owner(key_slot(f"{PREFIX}room:room{n}".encode())) == master:
            return f"room{n}"
    raise AssertionError("unreachable")


async def test_one_master_down_then_back(
    cluster: RedisCluster, hosts: tuple[Server, Server]
) -> None:
    a, b = hosts
    # The master to stop serves neither the channels' slot nor the room kept flowing.
    channels_master = cluster.slot_owner(key_slot(CHANNELS_KEY.encode()))
    down = (channels_master + 1) % 3
    up_room, down_room = room_on(cluster, (down + 1) % 3), room_on(cluster, down)
    async with (
        rpc_peers(a, 3) as (channel_on_a, up_on_a, down_on_a),
        rpc_peers(b, 3) as (channel_from_b, up_from_b, down_from_b),
    ):
        await channel_on_a.result("rpc.subscribe", ["ticks.*"])
        await up_on_a.call("join", {"room": up_room})
        await down_on_a.call("join", {"room": down_room})

        async def tick(n: int) -> None:
            await channel_from_b.result("announce", ["ticks.b", str(n)])

        async def say_up(n: int) -> None:
            await up_from_b.result("say", {"room": up_room, "text": str(n)})

        async def say_down(n: int) -> None:
            await down_from_b.result("say", {"room": down_room, "text": str(n)})

        channel = Ticks(tick, channel_on_a, "rpc.message", data)
        up = Ticks(say_up, up_on_a, "rpc.event", text)
        gone = Ticks(say_down, down_on_a, "rpc.event", text)
        async with channel, up, gone:
            await wait_until(lambda: all(s.flowing(0, 3) for s in (channel, up, gone)))
            cluster.kill(down)
            killed = time.monotonic()
            # The number being sent now may have gone before the kill: the next ones not.
            marks = [s.sent + 1 for s in (channel, up, gone)]
            for stream, mark in zip((channel, up), marks[:2], strict=True):
                await wait_until(partial(stream.flowing, mark, 30))
                # Not held up by the commands to the master away meanwhile.
                assert stream.longest_pause(killed) < STALL_S
            # What was said in the room of the master away is lost (at most once).
            assert gone.first_after(marks[2]) is None

            # In a thread: the streams go on while the master starts.
            await asyncio.to_thread(cluster.restart, down)
            back = time.monotonic()
            mark = gone.sent + 1
            resumed = await wait_until(partial(gone.first_after, mark), BACK_S + 5)
            assert resumed - back < BACK_S
            for stream in (channel, up, gone):
                await wait_until(partial(stream.flowing, stream.sent, 20))
        for stream in (channel, up, gone):
            stream.assert_in_order()
