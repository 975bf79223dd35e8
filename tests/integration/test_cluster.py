"""Rooms across processes and hosts through a real Redis: granian processes on two
ports (two "hosts") and one granian with two workers, all with the Redis broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .helpers import http_request, recv_json, wait_until
from .redis_server import RedisServer, redis_fixture
from .servers import Server, granian_command, start

TTL = 1.5  # GOBSTOPPER_PRESENCE_TTL for these servers
WAIT = 10.0

redis_server = redis_fixture()


def start_node(redis: RedisServer, workers: int = 1) -> Server:
    env = {"GOBSTOPPER_BROKER_URL": redis.url, "GOBSTOPPER_PRESENCE_TTL": str(TTL)}
    argv = granian_command("tests.apps.cluster:app", "rsgi", 0)
    argv[argv.index("--workers") + 1] = str(workers)
    return start("tests.apps.cluster:app", "rsgi", env, command=argv)


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[list[Server]]:
    """Host A, host B (one worker each) and host C (two workers)."""
    servers = [start_node(redis_server), start_node(redis_server), start_node(redis_server, 2)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


async def get_json(server: Server, path: str) -> Any:
    result = await http_request(server.port, "GET", path)
    assert result.status == 200, result.body
    return result.json()


async def join(server: Server, room: str, client_id: str) -> tuple[ClientConnection, int]:
    ws = await connect(f"{server.ws}/ws/room/{room}?id={client_id}")
    hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert hello["joined"] == client_id
    return ws, int(hello["pid"])


async def presence_count(server: Server, room: str, expected: int) -> bool:
    return bool((await get_json(server, f"/presence/{room}"))["count"] == expected)


async def test_forty_clients_on_three_hosts_get_every_broadcast_once_in_order(
    cluster: list[Server],
) -> None:
    async with AsyncExitStack() as stack:
        clients: list[ClientConnection] = []
        pids: set[int] = set()
        for i in range(40):
            ws, pid = await join(cluster[i % 3], "lobby", f"c{i}")
            stack.push_async_callback(ws.close)
            clients.append(ws)
            pids.add(pid)
        assert len(pids) >= 3  # at least one process per host
        # Presence is cluster-wide, whichever node is asked.
        for server in cluster:
            await wait_until(lambda s=server: presence_count(s, "lobby", 40))

        # Three senders on three hosts, 30 messages each.
        for seq in range(30):
            for sender in (0, 1, 2):
                await clients[sender].send(
                    json.dumps({"op": "broadcast", "data": {"from": sender, "seq": seq}})
                )
        for client in clients:
            got: dict[int, list[int]] = {0: [], 1: [], 2: []}
            for _ in range(90):
                message = await recv_json(client)
                got[message["from"]].append(message["seq"])
            # Exactly once, in each publisher's order.
            assert got == {0: list(range(30)), 1: list(range(30)), 2: list(range(30))}

        # Everyone but the sender, across hosts: the sender's next message is the marker,
        # sent (from another host) once the first message has arrived there.
        await clients[4].send(
            json.dumps({"op": "broadcast", "data": {"x": "not to 4"}, "exclude_me": True})
        )
        assert await recv_json(clients[5]) == {"x": "not to 4"}
        await clients[5].send(json.dumps({"op": "broadcast", "data": {"x": "marker"}}))
        assert await recv_json(clients[4]) == {"x": "marker"}
        for i, client in enumerate(clients):
            if i not in (4, 5):
                assert await recv_json(client) == {"x": "not to 4"}
            if i != 4:
                assert await recv_json(client) == {"x": "marker"}

        # One connection by id, wherever it is: c17 (host C) from c6 (host A).
        await clients[6].send(json.dumps({"op": "send_to", "id": "c17", "data": {"dm": 1}}))
        assert await recv_json(clients[6]) == {"sent": True}
        assert await recv_json(clients[17]) == {"dm": 1}
        await clients[6].send(json.dumps({"op": "send_to", "id": "nobody", "data": {}}))
        assert await recv_json(clients[6]) == {"sent": False}

        # Everyone, across hosts.
        await clients[7].send(json.dumps({"op": "broadcast", "data": {"to": "all"}, "room": False}))
        for client in clients:
            # c17 got nothing else: the direct message went to it alone.
            assert await recv_json(client) == {"to": "all"}


async def test_presence_drops_when_a_client_leaves_or_a_worker_dies(
    cluster: list[Server],
) -> None:
    host_a, host_b, _ = cluster
    async with AsyncExitStack() as stack:
        clients = []
        for i in range(6):
            ws, _ = await join(cluster[i % 2], "room", f"p{i}")
            stack.push_async_callback(ws.close)
            clients.append(ws)
        await wait_until(lambda: presence_count(host_a, "room", 6))
        await clients[0].close()  # on host A
        await wait_until(lambda: presence_count(host_b, "room", 5))
        members = (await get_json(host_b, "/presence/room"))["members"]
        assert "p0" not in members

        # Host B dies without a word: its 3 members go within the presence TTL.
        killed_at = time.monotonic()
        os.killpg(host_b.proc.pid, signal.SIGKILL)
        host_b.proc.wait(5)
        await wait_until(lambda: presence_count(host_a, "room", 2), timeout=TTL + 5)
        assert time.monotonic() - killed_at < TTL + 2
        assert sorted((await get_json(host_a, "/presence/room"))["members"]) == ["p2", "p4"]


async def test_redis_outage_local_delivery_goes_on_and_the_cluster_recovers(
    redis_server: RedisServer,
) -> None:
    host_a, host_b = start_node(redis_server), start_node(redis_server)
    try:
        async with AsyncExitStack() as stack:
            a1, _ = await join(host_a, "r", "a1")
            a2, _ = await join(host_a, "r", "a2")
            b1, _ = await join(host_b, "r", "b1")
            for ws in (a1, a2, b1):
                stack.push_async_callback(ws.close)
            await wait_until(lambda: presence_count(host_a, "r", 3))

            redis_server.kill()
            for host in (host_a, host_b):
                await wait_until(
                    lambda h=host: _broker(h, lambda b: not b["connected"]), timeout=WAIT
                )
            # Local delivery goes on; the sender learns the others were not reached.
            await a1.send(json.dumps({"op": "broadcast", "data": {"m": "during"}, "ack": True}))
            assert await recv_json(a2) == {"m": "during"}
            assert await recv_json(a1) == {"m": "during"}
            ack = await recv_json(a1)
            assert ack["published"] is False and ack["ack"] == 2 and ack["error"]
            await a1.send(json.dumps({"op": "send_to", "id": "b1", "data": "dm"}))
            assert "unavailable" in await recv_json(a1)

            redis_server.start()  # same port
            for host in (host_a, host_b):
                await wait_until(
                    lambda h=host: _broker(h, lambda b: b["connected"] and b["reconnects"] >= 1)
                )
            await a1.send(json.dumps({"op": "broadcast", "data": {"m": "after"}, "ack": True}))
            assert await recv_json(b1) == {"m": "after"}  # across hosts again
            assert host_a.proc.poll() is None and host_b.proc.poll() is None
            await wait_until(lambda: presence_count(host_b, "r", 3))
    finally:
        host_a.stop()
        host_b.stop()
        for host in (host_a, host_b):
            assert "Traceback" not in host.log(), host.log()


async def _broker(server: Server, check: Any) -> bool:
    state = (await get_json(server, "/health"))["broker"]
    return bool(check(state))


async def test_undecodable_and_oversized_messages_are_skipped(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    host = start_node(redis_server)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        async with AsyncExitStack() as stack:
            ws, _ = await join(host, "r", "x1")
            stack.push_async_callback(ws.close)

            # What a process in another language might publish, written by hand.
            def note(payload: bytes) -> bytes:
                return b"\x01" + msgspec.msgpack.encode({"origin": "other", "payload": payload})

            for garbage in (b"no header", b"\xff\xfe\n", b"\x01\x93\x01\x02\x03", note(b"\xff")):
                await raw.publish("gobstopper:room:r", garbage)
            await raw.publish("gobstopper:room:r", note(b"x" * (2 * 1024 * 1024)))
            await raw.publish("gobstopper:room:r", note(b'{"fine":1}'))
            assert await recv_json(ws) == {"fine": 1}  # the listener lives on
        assert "skipped" in host.log()
        health = await get_json(host, "/health")
        assert health["broker"]["connected"] is True
    finally:
        await raw.aclose()
        host.stop()
