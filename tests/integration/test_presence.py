"""Presence with users on real servers: one granian worker (RSGI and ASGI) on the
memory broker, then two hosts on a real Redis, one of which is SIGKILLed.

The clients are plain JSON-RPC peers: what they see is what the server puts on the wire.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from websockets.asyncio.client import connect

from .hosts import two_hosts
from .redis_server import RedisServer, redis_fixture
from .rpc_peer import RpcPeer
from .servers import Server, server_fixture

APP = "tests.apps.presence:app"
TTL = 2.0

presence_server = server_fixture(APP, "The presence test app, one worker, memory broker.")
redis_server = redis_fixture()


def conns(metas: list[dict[str, Any]]) -> list[str]:
    return [m["conn"] for m in metas]


class Watcher:
    """A subscriber of a tracked channel applying what it gets, as a client does: the
    subscribe answer's state, then each diff by assignment."""

    def __init__(self, peer: RpcPeer, channel: str) -> None:
        self.peer = peer
        self.channel = channel
        self.users: dict[str, list[str]] = {}
        self.connections = 0

    async def subscribe(self) -> dict[str, Any]:
        state = (await self.peer.result("rpc.subscribe", [self.channel]))["presence"]
        assert state["channel"] == self.channel
        self.users = {user: conns(metas) for user, metas in state["users"].items()}
        self.connections = state["connections"]
        return state  # type: ignore[no-any-return]

    async def next(self) -> tuple[str, str, list[str]]:
        diff = await self.peer.push("rpc.presence_diff")
        assert diff["channel"] == self.channel
        event, user, found = diff["event"], diff["user"], conns(diff["metas"])
        assert (event == "join") == (user not in self.users), (diff, self.users)
        if event == "leave":
            assert self.users.pop(user) == found
        else:
            self.users[user] = found
        return event, user, found

    async def until(self, users: dict[str, list[str]]) -> None:
        """Apply diffs until the view is ``users`` (updates on their way may come first)."""
        while self.users != users:
            await self.next()


@asynccontextmanager
async def opened(server: Server, query: str = "") -> AsyncIterator[tuple[RpcPeer, str]]:
    """A peer connected with ``query``, and its connection id."""
    async with connect(f"{server.ws}/rpc{query}") as ws:
        peer = RpcPeer(ws)
        yield peer, (await peer.result("rpc.info"))["id"]


async def test_users_tabs_meta_and_leaving_on_one_worker(presence_server: Server) -> None:
    async with AsyncExitStack() as stack:
        bob, b1 = await stack.enter_async_context(opened(presence_server, "?name=bob"))
        watcher = Watcher(bob, "room.1")
        assert (await watcher.subscribe())["users"] == {
            "bob": [{"conn": b1, "meta": {"device": "web"}}]
        }
        anon, _ = await stack.enter_async_context(opened(presence_server))
        await anon.result("rpc.subscribe", ["room.1"])  # counted, never listed
        async with opened(presence_server, "?name=ann&device=phone") as (ann1, a1):
            await ann1.result("rpc.subscribe", ["room.1"])
            assert await watcher.next() == ("join", "ann", [a1])
            async with opened(presence_server, "?name=ann") as (ann2, a2):
                answer = await ann2.result("rpc.subscribe", ["room.1"])
                assert answer["presence"]["connections"] == 4
                assert answer["presence"]["unique_users"] == 2
                assert await watcher.next() == ("update", "ann", sorted([a1, a2]))
                await ann1.result("away", [True])
                diff = await bob.push("rpc.presence_diff")
                assert diff["event"] == "update"
                assert {m["conn"]: m["meta"] for m in diff["metas"]}[a1] == {
                    "device": "phone",
                    "away": True,
                }
                state = await bob.result("rpc.presence", {"channel": "room.1"})
                assert {u: len(ms) for u, ms in state["users"].items()} == {"ann": 2, "bob": 1}
                assert state["connections"] == 4
            # A second tab closing is an update; the last one a leave.
            assert await watcher.next() == ("update", "ann", [a1])
        assert await watcher.next() == ("leave", "ann", [a1])
        await bob.nothing_more()


async def test_a_user_on_two_hosts_leaves_once(redis_server: RedisServer) -> None:
    env = {"GOBSTOPPER_BROKER_URL": redis_server.url, "GOBSTOPPER_PRESENCE_TTL": str(TTL)}
    with two_hosts(env, env, APP) as (a, b):
        async with AsyncExitStack() as stack:
            ann = []
            for host in (a, a, b):
                peer, conn_id = await stack.enter_async_context(opened(host, "?name=ann"))
                await peer.result("rpc.subscribe", ["room.x"])
                ann.append((peer, conn_id))
            bob, b1 = await stack.enter_async_context(opened(b, "?name=bob"))
            watcher = Watcher(bob, "room.x")
            await watcher.subscribe()
            all_ann = sorted(conn_id for _, conn_id in ann)
            await watcher.until({"ann": all_ann, "bob": [b1]})
            state = await bob.result("rpc.presence", ["room.x"])
            assert {u: len(ms) for u, ms in state["users"].items()} == {"ann": 3, "bob": 1}
            state = await ann[0][0].result("rpc.presence", ["room.x"])  # asked on host A
            assert (state["unique_users"], state["connections"]) == (2, 4)

            # One of ann's tabs on A, then her tab on B: updates only.
            await ann[0][0].ws.close()
            assert await watcher.next() == ("update", "ann", sorted([ann[1][1], ann[2][1]]))
            await ann[2][0].ws.close()
            assert await watcher.next() == ("update", "ann", [ann[1][1]])
            # Her last one, on the other host: one leave.
            await ann[1][0].ws.close()
            assert await watcher.next() == ("leave", "ann", [ann[1][1]])
            await bob.nothing_more()


async def test_the_users_of_a_killed_host_leave_within_the_ttl(
    redis_server: RedisServer,
) -> None:
    env = {"GOBSTOPPER_BROKER_URL": redis_server.url, "GOBSTOPPER_PRESENCE_TTL": str(TTL)}
    with two_hosts(env, env, APP) as (a, b):
        async with AsyncExitStack() as stack:
            bob, b1 = await stack.enter_async_context(opened(a, "?name=bob"))
            watcher = Watcher(bob, "room.k")
            await watcher.subscribe()
            cat, c1 = await stack.enter_async_context(opened(b, "?name=cat"))
            await cat.result("rpc.subscribe", ["room.k"])
            # ann has a tab on each host: the killed one's goes, she stays.
            ann_a, a1 = await stack.enter_async_context(opened(a, "?name=ann"))
            await ann_a.result("rpc.subscribe", ["room.k"])
            ann_b, a2 = await stack.enter_async_context(opened(b, "?name=ann"))
            await ann_b.result("rpc.subscribe", ["room.k"])
            await watcher.until({"ann": sorted([a1, a2]), "bob": [b1], "cat": [c1]})

            killed_at = time.monotonic()
            os.killpg(b.proc.pid, signal.SIGKILL)  # no goodbye: its presence expires
            b.proc.wait(5)
            changes = [await watcher.next(), await watcher.next()]
            # Its presence expires within the TTL; the liveness is read every TTL/4.
            assert time.monotonic() - killed_at < TTL + TTL / 4 + 1.0
            assert sorted(changes, key=str) == sorted(
                [("leave", "cat", [c1]), ("update", "ann", [a1])], key=str
            )
            # Once: the next change bob hears is a newcomer's, and nothing else came.
            dan, d1 = await stack.enter_async_context(opened(a, "?name=dan"))
            await dan.result("rpc.subscribe", ["room.k"])
            assert await watcher.next() == ("join", "dan", [d1])
            await bob.nothing_more()
