"""The HTTP API on a real granian: each command reaches real WebSocket clients, each
refusal is answered as documented, and on two workers sharing a Redis a command has
the same effect whichever worker takes it."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .helpers import WAIT, HTTPResult, http_request, wait_until
from .redis_server import RedisServer, require_redis
from .rpc_peer import RpcPeer
from .servers import Server, granian_command, start

KEY = "k3y-for-the-tests-0123456789"
AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
LIMIT = 64 * 1024  # GOBSTOPPER_API_MAX_BYTES of the test server


@pytest.fixture(scope="module")
def api_server() -> Iterator[Server]:
    """The API test app under granian (RSGI), its key in the environment."""
    env = {"GOBSTOPPER_API_KEY": KEY, "GOBSTOPPER_API_MAX_BYTES": str(LIMIT)}
    server = start("tests.apps.api:app", "rsgi", env)
    yield server
    server.stop()


async def post(
    server: Server, body: Any, headers: dict[str, str] | None = None, path: str = "/api"
) -> HTTPResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http_request(server.port, "POST", path, raw, AUTH if headers is None else headers)


async def command(server: Server, body: dict[str, Any]) -> Any:
    """The answer to one command that must succeed."""
    result = await post(server, body)
    assert result.status == 200, (result.status, result.body)
    return result.json()


async def refused(server: Server, body: Any, status: int = 400, **kw: Any) -> str:
    """The error message of a request that must be refused with ``status``."""
    result = await post(server, body, **kw)
    assert result.status == status, (result.status, result.body)
    error = result.json()["error"]
    assert error["code"] == status
    assert "Traceback" not in error["message"]
    return str(error["message"])


@contextlib.asynccontextmanager
async def rpc_peer(server: Server, conn_id: str, user: str = "") -> AsyncIterator[RpcPeer]:
    """A message-layer client with id ``conn_id`` (of ``user``), registered once this yields."""
    query = f"&user={user}" if user else ""
    peer = await RpcPeer.open(f"{server.ws}/rpc?id={conn_id}{query}")
    try:
        await peer.result("rpc.info")  # answered: the connection is registered
        yield peer
    finally:
        await peer.ws.close()


@contextlib.asynccontextmanager
async def plain(server: Server, room: str, conn_id: str) -> AsyncIterator[ClientConnection]:
    """A plain WebSocket in ``room``, with id ``conn_id``."""
    async with connect(f"{server.ws}/ws/{room}?id={conn_id}") as ws:
        assert await asyncio.wait_for(ws.recv(), WAIT) == "joined"
        yield ws


async def received(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), WAIT)


# -- each command ------------------------------------------------------------------------


async def test_publish_reaches_the_channel_subscribers(api_server: Server) -> None:
    async with rpc_peer(api_server, "ann") as ann, rpc_peer(api_server, "ben") as ben:
        for peer in (ann, ben):
            await peer.result("rpc.subscribe", {"channel": "news.*"})
        answer = await command(
            api_server, {"command": "publish", "channel": "news.sport", "data": {"goal": 1}}
        )
        assert answer == {"delivered": 2, "published": False}  # one worker, no broker
        for peer in (ann, ben):
            assert await peer.push("rpc.message") == {"channel": "news.sport", "data": {"goal": 1}}
        answer = await command(
            api_server,
            {"command": "publish", "channel": "news.x", "data": "hi", "exclude": ["ann"]},
        )
        assert answer["delivered"] == 1
        assert await ben.push("rpc.message") == {"channel": "news.x", "data": "hi"}
        await ann.nothing_more()


async def test_broadcast_and_send_reach_plain_websockets(api_server: Server) -> None:
    async with plain(api_server, "lobby", "p1") as p1, plain(api_server, "lobby", "p2") as p2:
        answer = await command(
            api_server, {"command": "broadcast", "data": "hello", "room": "lobby"}
        )
        assert answer == {"delivered": 2, "published": False}
        assert [await received(p1), await received(p2)] == ["hello", "hello"]
        binary = {"command": "broadcast", "data": {"bytes": "AAEC"}, "exclude": ["p1"]}
        assert (await command(api_server, binary))["delivered"] == 1
        assert await received(p2) == b"\x00\x01\x02"
        assert await command(api_server, {"command": "send", "id": "p1", "data": "just you"}) == {
            "sent": True
        }
        assert await received(p1) == "just you"  # and not the broadcast p1 was excluded from
        nobody = {"command": "send", "id": "nobody", "data": "x"}
        assert await command(api_server, nobody) == {"sent": False}


async def test_emit_reaches_a_room_or_one_connection(api_server: Server) -> None:
    async with rpc_peer(api_server, "cat") as cat, rpc_peer(api_server, "dan") as dan:
        await cat.result("join", {"room": "team"})
        answer = await command(
            api_server, {"command": "emit", "event": "score", "data": [1, 2], "room": "team"}
        )
        assert answer["delivered"] == 1
        assert await cat.push("rpc.event") == {"event": "score", "data": [1, 2], "from": None}
        await command(api_server, {"command": "emit", "event": "ping", "to": "dan"})
        assert await dan.push("rpc.event") == {"event": "ping", "data": None, "from": None}
        await cat.nothing_more()
        both = {"command": "emit", "event": "e", "room": "team", "to": "dan"}
        assert "room or to" in await refused(api_server, both)


async def test_disconnect_closes_the_connection(api_server: Server) -> None:
    async with plain(api_server, "lobby", "gone") as ws:
        bad_code = {"command": "disconnect", "id": "gone", "code": 2000}
        assert "3000" in await refused(api_server, bad_code)
        answer = await command(
            api_server, {"command": "disconnect", "id": "gone", "code": 4001, "reason": "bye"}
        )
        assert answer == {"found": True}
        with pytest.raises(ConnectionClosed):
            await received(ws)  # closed by the server (RSGI sends no code)

    async def forgotten() -> bool:
        answer = await command(api_server, {"command": "disconnect", "id": "gone"})
        return answer == {"found": False}

    await wait_until(forgotten, what="the closed connection is no longer found")


async def test_disconnect_user_closes_each_of_their_connections(api_server: Server) -> None:
    url = f"{api_server.ws}/rpc?user="
    async with (
        connect(url + "ann") as ann1,
        connect(url + "ann") as ann2,
        connect(url + "ben") as ben,
    ):
        for peer in (RpcPeer(ann1), RpcPeer(ann2), RpcPeer(ben)):
            await peer.result("rpc.info")  # served, and registered as its user's
        answer = await command(api_server, {"command": "disconnect_user", "user": "ann"})
        assert answer == {"closed": 2, "published": False}  # one server: nobody else to tell
        for ws in (ann1, ann2):
            await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert await RpcPeer(ben).result("rpc.info")  # another user's stays


async def test_subscribe_and_unsubscribe_a_connection(api_server: Server) -> None:
    async with rpc_peer(api_server, "eve") as eve:
        sub = {"command": "subscribe", "id": "eve", "channel": "alerts"}
        assert await command(api_server, sub) == {"found": True}
        assert (await eve.result("rpc.info"))["subscriptions"] == ["alerts"]
        await command(api_server, {"command": "publish", "channel": "alerts", "data": 1})
        assert await eve.push("rpc.message") == {"channel": "alerts", "data": 1}
        assert await command(api_server, {**sub, "command": "unsubscribe"}) == {"found": True}
        await command(api_server, {"command": "publish", "channel": "alerts", "data": 2})
        await eve.nothing_more()
    missing = {"command": "subscribe", "id": "nobody", "channel": "alerts"}
    assert await command(api_server, missing) == {"found": False}
    bad = {"command": "subscribe", "id": "eve", "channel": "no spaces"}
    assert "channel" in await refused(api_server, bad)


async def test_presence_lists_room_members_and_subscribers(api_server: Server) -> None:
    async with plain(api_server, "hall", "fay"), rpc_peer(api_server, "gus", "gustav") as gus:
        await gus.result("join", {"room": "hall"})
        await gus.result("rpc.subscribe", {"channel": "weather"})
        await gus.result("rpc.subscribe", {"channel": "weather.*"})
        room = await command(api_server, {"command": "presence", "room": "hall"})
        # fay has no user: a member, counted, but no user's connection.
        gustav = {"gustav": [{"conn": "gus", "meta": {}}]}
        assert room == {"members": ["fay", "gus"], "count": 2, "users": gustav, "unique_users": 1}
        channel = await command(api_server, {"command": "presence", "channel": "weather"})
        assert channel == {"members": ["gus"], "count": 1, "users": gustav, "unique_users": 1}
        pattern = await command(api_server, {"command": "presence", "channel": "weather.*"})
        assert pattern == {"members": ["gus"], "count": 1, "users": {}, "unique_users": 0}
    assert "one of them" in await refused(api_server, {"command": "presence"})


async def test_history_returns_what_the_channel_kept(api_server: Server) -> None:
    for n in range(3):
        await command(api_server, {"command": "publish", "channel": "kept.log", "data": n})
    whole = await command(api_server, {"command": "history", "channel": "kept.log"})
    assert [p["data"] for p in whole["publications"]] == [0, 1, 2]
    first = whole["publications"][0]["offset"]
    since = {"offset": first, "epoch": whole["epoch"]}
    after = await command(
        api_server, {"command": "history", "channel": "kept.log", "since": since, "limit": 1}
    )
    assert [p["data"] for p in after["publications"]] == [1]
    assert after["recovered"] is True
    assert "history" in await refused(api_server, {"command": "history", "channel": "plain"})


async def test_stats_describe_this_node(api_server: Server) -> None:
    async with plain(api_server, "stats-room", "hal"):
        stats = await command(api_server, {"command": "stats"})
    assert stats["connections"] >= 1 and stats["rooms"] >= 1
    assert stats["queued_bytes"] >= 0 and stats["queued_messages"] >= 0
    assert stats["broker"]["url"] == "memory://"


async def test_a_batch_is_answered_in_order_each_command_on_its_own(api_server: Server) -> None:
    async with rpc_peer(api_server, "ivy") as ivy:
        await ivy.result("rpc.subscribe", {"channel": "batch"})
        batch = [
            {"command": "publish", "channel": "batch", "data": "one"},
            {"command": "launch"},
            {"command": "publish", "channel": "batch"},
            "not an object",
            {"command": "publish", "channel": "batch", "data": "two"},
        ]
        result = await post(api_server, batch)
        assert result.status == 200
        answers = result.json()
        assert answers[0] == answers[4] == {"delivered": 1, "published": False}
        assert [a["error"]["code"] for a in answers[1:4]] == [400, 400, 400]
        assert "unknown command 'launch'" in answers[1]["error"]["message"]
        assert "`data`" in answers[2]["error"]["message"]
        for data in ("one", "two"):
            assert await ivy.push("rpc.message") == {"channel": "batch", "data": data}


# -- refusals ----------------------------------------------------------------------------


async def test_the_key_is_required(api_server: Server) -> None:
    stats = {"command": "stats"}
    assert "key" in await refused(api_server, stats, 401, headers={})
    result = await post(api_server, stats, headers={"authorization": "Bearer wrong-key-0123456789"})
    assert result.status == 401 and result.headers["www-authenticate"] == "Bearer"
    assert (await post(api_server, stats, headers={"authorization": KEY})).status == 401
    assert (await post(api_server, stats, headers={"x-api-key": KEY})).status == 200
    assert (await post(api_server, stats, headers={"authorization": f"bearer {KEY}"})).status == 200


async def test_malformed_requests_are_refused_with_the_reason(api_server: Server) -> None:
    assert "not valid JSON" in await refused(api_server, b"{nope")
    assert "JSON object" in await refused(api_server, 42)
    assert "at least one" in await refused(api_server, [])
    assert '"command"' in await refused(api_server, {"channel": "x"})
    assert "unknown command 'shout'" in await refused(api_server, {"command": "shout"})
    missing = await refused(api_server, {"command": "publish", "data": 1})
    assert "`channel`" in missing
    typed = await refused(api_server, {"command": "publish", "channel": 5, "data": 1})
    assert "`str`" in typed and "$.channel" in typed
    typo = await refused(api_server, {"command": "publish", "chanel": "x", "data": 1})
    assert "`chanel`" in typo
    endpoint = {"command": "publish", "channel": "x", "data": 1, "endpoint": "chat"}
    assert "no endpoint named 'chat'" in await refused(api_server, endpoint)


async def test_a_body_over_the_limit_is_refused(api_server: Server) -> None:
    big = {"command": "broadcast", "data": "x" * LIMIT}
    assert "limit" in await refused(api_server, big, 413)

    def chunked() -> HTTPResult:
        # No content-length: the server finds out while reading.
        conn = http.client.HTTPConnection("127.0.0.1", api_server.port, timeout=WAIT)
        try:
            body = json.dumps(big).encode()
            chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
            conn.request("POST", "/api", body=chunks, headers=AUTH, encode_chunked=True)
            resp = conn.getresponse()
            return HTTPResult(resp.status, {}, resp.read())
        finally:
            conn.close()

    result = await asyncio.to_thread(chunked)
    assert result.status == 413, result.body


async def test_only_post_is_allowed(api_server: Server) -> None:
    result = await http_request(api_server.port, "GET", "/api", headers=AUTH)
    assert result.status == 405 and result.headers["allow"] == "POST"


async def test_without_a_key_there_is_no_api() -> None:
    server = start("tests.apps.api:app", "rsgi")
    try:
        assert (await post(server, {"command": "stats"})).status == 404
    finally:
        server.stop()


# -- two workers -------------------------------------------------------------------------


class ApiConnection:
    """One keep-alive HTTP connection to the API, hence to one worker."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)

    def call_sync(self, body: Any) -> Any:
        self.http.request("POST", "/api", body=json.dumps(body).encode(), headers=AUTH)
        resp = self.http.getresponse()
        answer = json.loads(resp.read())
        assert resp.status == 200, answer
        return answer

    async def call(self, body: Any) -> Any:
        return await asyncio.to_thread(self.call_sync, body)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer(require_redis())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def two_workers(redis: RedisServer) -> Iterator[Server]:
    """The API test app on two granian workers sharing ``redis``."""
    argv = granian_command("tests.apps.api:app", "rsgi", 0)
    argv[argv.index("--workers") + 1] = "2"
    env = {"GOBSTOPPER_API_KEY": KEY, "GOBSTOPPER_BROKER_URL": redis.url}
    server = start("", "rsgi", env, command=argv)
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def on_each_worker(
    server: Server, prefix: str
) -> AsyncIterator[tuple[list[ApiConnection], list[RpcPeer]]]:
    """An API connection and a message-layer client (ids ``<prefix>0``, ``<prefix>1``...)
    on each worker: connections are opened until both workers hold one of each (the
    kernel spreads them). Each test has its own ``prefix``: an id whose connection is
    still closing on the server would be refused."""
    apis: dict[str, ApiConnection] = {}
    peers: dict[str, RpcPeer] = {}
    opened: list[ApiConnection | RpcPeer] = []
    seen: set[str] = set()

    async def both_workers_answer() -> bool:
        # Granian listens once one worker is up: wait until the other answers too.
        result = await post(server, {"command": "stats"})
        seen.add(result.json()["node"])
        return len(seen) == 2

    await wait_until(both_workers_answer, what="both workers answer")
    try:
        for i in itertools.count():
            assert i < 40, "every connection landed on the same worker"
            api = ApiConnection(server.port)
            opened.append(api)
            apis.setdefault((await api.call({"command": "stats"}))["node"], api)
            peer = await RpcPeer.open(f"{server.ws}/rpc?id={prefix}{i}")
            opened.append(peer)
            peers.setdefault(await peer.result("node"), peer)
            if len(apis) == 2 and len(peers) == 2:
                break
        assert apis.keys() == peers.keys()
        yield list(apis.values()), [peers[node] for node in apis]
    finally:
        for each in opened:
            if isinstance(each, ApiConnection):
                each.close()
            else:
                await each.ws.close()


async def test_a_command_to_either_worker_reaches_clients_on_both(two_workers: Server) -> None:
    async with on_each_worker(two_workers, "either") as (apis, peers):
        ids = [(await peer.result("rpc.info"))["id"] for peer in peers]
        for peer in peers:
            await peer.result("rpc.subscribe", {"channel": "news"})
        presence = {"command": "presence", "channel": "news"}
        for api in apis:
            answer = await wait_until(
                lambda api=api: _has_both(api, presence, ids),  # type: ignore[misc]
                what="both subscribers in the cluster-wide presence",
            )
            assert answer["count"] == 2
        for n, api in enumerate(apis):
            answer = await api.call({"command": "publish", "channel": "news", "data": n})
            assert answer == {"delivered": 1, "published": True}
            for peer in peers:
                assert await peer.push("rpc.message") == {"channel": "news", "data": n}
            await api.call({"command": "emit", "event": "hello", "data": n})
            for peer in peers:
                assert await peer.push("rpc.event") == {"event": "hello", "data": n, "from": None}
        # Each API worker reaches the client on the other one, by id.
        for api, other in zip(apis, reversed(ids), strict=True):
            assert await api.call({"command": "emit", "event": "dm", "to": other}) == {
                "delivered": 0,
                "published": True,
            }
        for peer in peers:
            assert (await peer.push("rpc.event", "dm"))["event"] == "dm"
        gone = await apis[0].call({"command": "disconnect", "id": ids[1], "code": 4000})
        assert gone == {"found": True}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(peers[1].ws.recv(), WAIT)


async def _has_both(api: ApiConnection, body: dict[str, Any], ids: list[str]) -> Any:
    answer = await api.call(body)
    return answer if sorted(answer["members"]) == sorted(ids) else None


async def test_a_burst_of_publishes_arrives_once_and_in_order(two_workers: Server) -> None:
    """1,000 publishes over four HTTP connections (on both workers), 250 each: every
    subscriber, one per worker, gets each once, and each connection's in its order."""
    async with on_each_worker(two_workers, "burst") as (apis, peers):
        for peer in peers:
            await peer.result("rpc.subscribe", {"channel": "burst"})
        ids = [(await peer.result("rpc.info"))["id"] for peer in peers]
        presence = {"command": "presence", "channel": "burst"}
        await wait_until(lambda: _has_both(apis[0], presence, ids))
        extra = [ApiConnection(two_workers.port) for _ in range(2)]
        senders = [*apis, *extra]
        per_sender = 250
        total = per_sender * len(senders)

        def send_all(k: int, api: ApiConnection) -> None:
            for n in range(per_sender):
                body = {"command": "publish", "channel": "burst", "data": [k, n]}
                assert api.call_sync(body)["published"] is True

        async def collect(peer: RpcPeer) -> list[list[int]]:
            got: list[list[int]] = []
            while len(got) < total:
                got.append((await peer.push("rpc.message"))["data"])
            return got

        try:
            readers = [asyncio.create_task(collect(peer)) for peer in peers]
            await asyncio.gather(
                *(asyncio.to_thread(send_all, k, api) for k, api in enumerate(senders))
            )
            results = await asyncio.wait_for(asyncio.gather(*readers), WAIT * 3)
        finally:
            for api in extra:
                api.close()
        for got in results:
            for k in range(len(senders)):
                assert [n for s, n in got if s == k] == list(range(per_sender)), k
        for peer in peers:
            await peer.nothing_more()
