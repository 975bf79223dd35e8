"""The nats-server helpers start what they promise: a server that carries messages, and a
cluster of three that routes between its servers, runs clustered JetStream and takes a
crashed server back."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NoStreamResponseError

from .helpers import wait_until
from .nats_server import NatsCluster, NatsServer, nats_cluster_fixture, nats_fixture

WAIT = 5.0

nats_server = nats_fixture("module")
nats_cluster = nats_cluster_fixture("module")


async def round_trip(publisher: Client, subscriber: Client, subject: str) -> bytes:
    sub = await subscriber.subscribe(subject)
    # The subscription must reach the publisher's server (across a route in a cluster)
    # before the message is sent, or the message goes nowhere.
    await subscriber.flush()
    for _ in range(int(WAIT / 0.1)):
        await publisher.publish(subject, b"hello")
        try:
            msg = await sub.next_msg(timeout=0.1)
        except nats.errors.TimeoutError:
            continue  # the interest has not crossed the route yet
        await sub.unsubscribe()
        return msg.data
    raise AssertionError(f"nothing arrived on {subject}")


async def test_single_server_round_trip(nats_server: NatsServer) -> None:
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    nc = await nats.connect(nats_server.url)
    try:
        assert await round_trip(nc, nc, "single.hello") == b"hello"
        info = await nc.jetstream().account_info()  # JetStream is on
        assert info.streams == 0
    finally:
        await nc.close()


async def test_single_server_restart_keeps_jetstream(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream(timeout=WAIT)
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        assert (await js.publish("kept.one", b"kept")).seq == 1
    finally:
        await nc.close()
    port = nats_server.port
    await asyncio.to_thread(nats_server.restart)
    assert nats_server.port == port
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream(timeout=WAIT)
        assert (await js.get_msg("KEPT", 1)).data == b"kept"
        await js.delete_stream("KEPT")
    finally:
        await nc.close()


def test_cluster_urls(nats_cluster: NatsCluster) -> None:
    ports = [server.port for server in nats_cluster.servers]
    assert nats_cluster.urls == [f"nats://127.0.0.1:{port}" for port in ports]
    assert nats_cluster.url == ",".join(nats_cluster.urls)
    assert len(set(ports)) == 3


async def test_cluster_routes_messages(nats_cluster: NatsCluster) -> None:
    subscriber = await nats.connect(nats_cluster.urls[0], dont_randomize=True)
    publisher = await nats.connect(nats_cluster.urls[2], dont_randomize=True)
    try:
        assert subscriber.connected_url is not None
        assert subscriber.connected_url.port == nats_cluster.servers[0].port
        assert publisher.connected_url is not None
        assert publisher.connected_url.port == nats_cluster.servers[2].port
        assert await round_trip(publisher, subscriber, "cluster.hello") == b"hello"
    finally:
        await subscriber.close()
        await publisher.close()


async def test_cluster_jetstream(nats_cluster: NatsCluster) -> None:
    # nats-py takes the list of servers, not the comma-separated string.
    nc = await nats.connect(nats_cluster.url.split(","))
    try:
        js = nc.jetstream(timeout=WAIT)
        await js.add_stream(name="HELPERS", subjects=["helpers.>"], num_replicas=3)
        ack = await js.publish("helpers.one", b"kept")
        assert (ack.stream, ack.seq) == ("HELPERS", 1)
        msg = await js.get_msg("HELPERS", 1)
        assert msg.data == b"kept"
        await js.delete_stream("HELPERS")
    finally:
        await nc.close()


@pytest.mark.timeout(60)
async def test_cluster_survives_a_crash(nats_cluster: NatsCluster) -> None:
    crashed = nats_cluster.servers[1]
    nc = await nats.connect(nats_cluster.urls[0], dont_randomize=True)
    js = nc.jetstream(timeout=WAIT)
    await js.add_stream(name="CRASH", subjects=["crash.stored"], num_replicas=3)
    assert (await js.publish("crash.stored", b"before")).seq == 1
    nats_cluster.kill(1)
    assert not crashed.running()
    first, last = nats_cluster.servers[0], nats_cluster.servers[2]
    # The survivors still route to each other, and to nothing else once the dead route
    # is dropped.
    await wait_until(lambda: first.route_ids() == {last.server_id()}, WAIT, "0 routes to 2")
    await wait_until(lambda: last.route_ids() == {first.server_id()}, WAIT, "2 routes to 0")
    subscriber = await nats.connect(nats_cluster.urls[0], dont_randomize=True)
    publisher = await nats.connect(nats_cluster.urls[2], dont_randomize=True)
    try:
        assert await round_trip(publisher, subscriber, "crash.hello") == b"hello"
    finally:
        await subscriber.close()
        await publisher.close()

    async def published() -> bool:
        # Until a new stream leader is elected (when server 1 led it) nothing acknowledges:
        # the publish times out or finds no stream to answer it.
        try:
            ack = await js.publish("crash.stored", b"during", timeout=0.5)
        except (nats.errors.TimeoutError, NoStreamResponseError):
            return False
        # Not a sequence number: a publish that timed out may still have been stored.
        return ack.stream == "CRASH"

    try:
        await wait_until(published, 15.0, "a 3-replica stream takes messages with 2 up")
    finally:
        await nc.close()

    # start() waits for every server to route to the other two again.
    await asyncio.to_thread(nats_cluster.start, 1)
    assert crashed.running()
    assert crashed.route_ids() == {first.server_id(), last.server_id()}
    assert crashed.server_id() in (first.route_ids() or set())
    rejoined = await nats.connect(nats_cluster.urls[1], dont_randomize=True)
    listener = await nats.connect(nats_cluster.urls[0], dont_randomize=True)
    try:
        assert await round_trip(rejoined, listener, "rejoined.hello") == b"hello"
    finally:
        await rejoined.close()
        await listener.close()
