"""Two hosts on a three-server NATS cluster, each node on a server of its own: rooms,
channels matched by pattern, events to one connection and presence span the hosts;
when host B's server dies, B's node moves to another server of the cluster (NATS tells
its clients the others' addresses) and delivery between the hosts resumes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import pytest

from .helpers import wait_until
from .hosts import Ticks, data, rooms_channels_events_and_presence, two_hosts
from .nats_server import NatsCluster, nats_cluster_fixture
from .rpc_peer import rpc_peers
from .servers import Server

#: Within how long a node that lost its server delivers again through another.
MOVE_S = 10.0

cluster = nats_cluster_fixture()


@pytest.fixture
def hosts(cluster: NatsCluster) -> Iterator[tuple[Server, Server]]:
    """Host A on the first server, host B on the second (only), three copies of every
    bucket and stream."""
    env_a, env_b = ({"GOBSTOPPER_BROKER_URL": f"{url}?replicas=3"} for url in cluster.urls[:2])
    with two_hosts(env_a, env_b) as servers:
        yield servers


async def test_rooms_channels_events_and_presence_span_hosts(
    hosts: tuple[Server, Server],
) -> None:
    await rooms_channels_events_and_presence(*hosts)


async def test_delivery_resumes_when_a_hosts_server_dies(
    cluster: NatsCluster, hosts: tuple[Server, Server]
) -> None:
    a, b = hosts
    async with rpc_peers(a, 2) as (on_a, from_a), rpc_peers(b, 2) as (on_b, from_b):
        on_b_id = (await on_b.result("rpc.info"))["id"]
        await on_a.result("rpc.subscribe", ["ticks.*"])
        await on_b.result("rpc.subscribe", ["tocks.*"])

        async def tick(n: int) -> None:
            await from_b.result("announce", ["ticks.b", str(n)])

        async def tock(n: int) -> None:
            await from_a.result("announce", ["tocks.a", str(n)])

        b_to_a = Ticks(tick, on_a, "rpc.message", data)
        a_to_b = Ticks(tock, on_b, "rpc.message", data)
        streams = (b_to_a, a_to_b)
        async with b_to_a, a_to_b:
            # Both ways flowing (the subscriptions' interest has crossed the routes).
            await wait_until(lambda: all(s.flowing(0, 3) for s in streams))
            cluster.kill(1)  # host B's server, publications on their way
            killed = time.monotonic()
            # The number being sent now may have gone before the kill: the next ones not.
            marks = [s.sent + 1 for s in streams]
            for stream, mark in zip(streams, marks, strict=True):
                resumed = await wait_until(partial(stream.first_after, mark), MOVE_S + 5)
                assert resumed - killed < MOVE_S
                # From then on, every one arrives, in order.
                await wait_until(partial(stream.flowing, mark, 20))
        for stream in streams:
            stream.assert_in_order()

        async def b_subscriber_seen_on_a() -> bool:
            # An error is a moment of JetStream's copies electing a new leader.
            answer = await on_a.call("subscribers", ["tocks.*"])
            return answer.get("result") == [on_b_id]

        await wait_until(b_subscriber_seen_on_a, 15)
