"""Every example runs as the docs say and does what they claim."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .helpers import WAIT, http_request, recv_json, wait_until
from .rpc_peer import RpcPeer
from .servers import ROOT, Server, granian_command, server_fixture, start

echo_server = server_fixture("examples.echo:app", "The echo example under granian.")


async def test_echo_example(echo_server: Server) -> None:
    async with connect(f"{echo_server.ws}/ws/echo") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00bin")
        assert await ws.recv() == b"\x00bin"
    page = await http_request(echo_server.port, "GET", "/")
    assert page.status == 200 and b"new WebSocket(" in page.body and b"/ws/echo" in page.body
    health = await http_request(echo_server.port, "GET", "/health")
    assert health.json() == {"status": "ok"}


async def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_app.py").write_text(code)
    server = start(
        "",
        "rsgi",
        command=granian_command("readme_app:app", "rsgi", 0),  # the port is filled in
        cwd=tmp_path,
    )
    try:
        async with connect(f"{server.ws}/ws/chat/lobby") as ws:
            await ws.send("hi")
            assert await ws.recv() == "[lobby] hi"
    finally:
        server.stop()


chat_server = server_fixture("examples.chat:app", "The chat example under granian.")


async def open_chat(server: Server, name: str, device: str | None = None) -> RpcPeer:
    query = f"name={name}" + (f"&device={device}" if device else "")
    return await RpcPeer.open(f"{server.ws}/ws/chat?{query}")


async def conn_id(peer: RpcPeer) -> str:
    return str((await peer.result("rpc.info"))["id"])


def metas(*conns: tuple[str, str, str]) -> list[dict[str, Any]]:
    """A user's presence metas from (conn id, name, device), sorted by conn id."""
    return [{"conn": c, "meta": {"name": n, "device": d}} for c, n, d in sorted(conns)]


async def enter(peer: RpcPeer, room: str) -> dict[str, Any]:
    """Subscribe to the room's channel; its presence as the answer gave it."""
    answer = await peer.result("rpc.subscribe", {"channel": f"room.{room}"})
    presence: dict[str, Any] = answer["presence"]
    assert presence["channel"] == f"room.{room}", answer
    return presence


async def presence_diff(peer: RpcPeer, event: str, user: str) -> list[dict[str, Any]]:
    """The metas of the next ``event`` diff about ``user`` (a diff of the peer's own
    entrance, which may follow its answer, is skipped: it repeats the answer's state)."""
    while True:
        diff = await peer.push("rpc.presence_diff")
        if diff["event"] == event and diff["user"] == user:
            return diff["metas"]  # type: ignore[no-any-return]


async def said(peer: RpcPeer) -> dict[str, Any]:
    """The next message on a room's channel."""
    return await peer.push("rpc.message")


def state(room: str, users: dict[str, list[dict[str, Any]]], connections: int) -> dict[str, Any]:
    return {
        "channel": f"room.{room}",
        "users": users,
        "connections": connections,
        "unique_users": len(users),
    }


async def test_chat_example(chat_server: Server) -> None:
    """Users by name with a device each: the room's presence lists each user once with
    their connections; a second tab is an update, the last one going a leave; messages
    and typing notices on the room's channel."""
    ann = await open_chat(chat_server, "ann", "laptop")
    ben = await open_chat(chat_server, "ben", "phone")
    ann2 = await open_chat(chat_server, "ann", "phone")
    cat = await open_chat(chat_server, "cat")  # no device: named after its User-Agent
    peers = (ann, ben, ann2, cat)
    try:
        a, b, a2, c = [await conn_id(p) for p in peers]
        ann_1 = (a, "ann", "laptop")
        ben_1 = (b, "ben", "phone")
        ann_2 = (a2, "ann", "phone")
        assert await enter(ann, "lobby") == state("lobby", {"ann": metas(ann_1)}, 1)
        assert await enter(ben, "lobby") == state(
            "lobby", {"ann": metas(ann_1), "ben": metas(ben_1)}, 2
        )
        assert await presence_diff(ann, "join", "ben") == metas(ben_1)
        # ann's second tab: ann is there already, an update (with both connections).
        both = metas(ann_1, ann_2)
        assert await enter(ann2, "lobby") == state("lobby", {"ann": both, "ben": metas(ben_1)}, 3)
        assert await presence_diff(ann, "update", "ann") == both
        assert await presence_diff(ben, "update", "ann") == both
        cat_1 = (c, "cat", "Python")  # the device named after its User-Agent
        assert await enter(cat, "elsewhere") == state("elsewhere", {"cat": metas(cat_1)}, 1)

        assert await ann.result("say", {"room": "lobby", "text": "hello"}) is None
        hello = {"channel": "room.lobby", "data": {"kind": "said", "name": "ann", "text": "hello"}}
        for peer in (ann, ben, ann2):
            assert await said(peer) == hello
        assert await ben.result("typing", {"room": "lobby"}) is None
        for peer in (ann, ann2):
            assert (await said(peer))["data"] == {"kind": "typing", "name": "ben"}
        assert await ben.result("say", {"room": "lobby", "text": "hi"}) is None
        hi = {"kind": "said", "name": "ben", "text": "hi"}
        assert (await said(ben))["data"] == hi  # not its own typing notice
        for peer in (ann, ann2):
            assert (await said(peer))["data"] == hi
        # What is said in another room stays there; a room one is not in is refused.
        assert await cat.result("say", {"room": "elsewhere", "text": "only here"}) is None
        assert (await said(cat))["data"]["text"] == "only here"
        reply = await cat.call("say", {"room": "lobby", "text": "sneaking in"})
        assert reply["error"] == {"code": 4001, "message": "join the room first", "data": "lobby"}
        for channel in ("room.*", "room.**", "rooms.lobby", "room.a.b"):
            reply = await cat.call("rpc.subscribe", {"channel": channel})
            assert reply["error"]["code"] == -32001, (channel, reply)

        # One of ann's two tabs goes: ann is still there (an update); then ben goes.
        await ann2.ws.close()
        assert await presence_diff(ben, "update", "ann") == metas(ann_1)
        assert await presence_diff(ann, "update", "ann") == metas(ann_1)
        health = await http_request(chat_server.port, "GET", "/health")
        assert health.json()["connections"] == 3
        await ben.ws.close()
        assert await presence_diff(ann, "leave", "ben") == metas(ben_1)
        for peer in (ann, cat):
            for p in peer.pushes:
                assert p["method"] == "rpc.presence_diff", p
                assert p["params"]["event"] != "leave", p  # no leave but ben's
    finally:
        for peer in peers:
            await peer.ws.close()
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{chat_server.ws}/ws/chat"):  # no name
            pass
    assert info.value.response.status_code == 400
    page = await http_request(chat_server.port, "GET", "/")
    assert b'<script src="/gobstopper.js">' in page.body and b"/ws/chat?" in page.body
    assert b"client.presence(" in page.body


def test_chat_example_names_devices() -> None:
    from examples.chat.app import device_name

    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    assert device_name(firefox) == "Firefox on Linux"
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    )
    assert device_name(iphone) == "Safari on iPhone"
    assert device_name("Python/3.12 websockets/15.0") == "Python"
    assert device_name("") == "unknown"


async def test_chat_example_serves_the_browser_client(chat_server: Server) -> None:
    from gobstopper.messages.static import CLIENT_JS

    script = await http_request(chat_server.port, "GET", "/gobstopper.js")
    assert script.status == 200 and script.body == CLIENT_JS.read_bytes()
    assert script.headers["content-type"].startswith("text/javascript")
    etag = script.headers["etag"]
    again = await http_request(
        chat_server.port, "GET", "/gobstopper.js", headers={"If-None-Match": etag}
    )
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag


async def test_chat_example_answers_garbage_and_nobody_else_notices(chat_server: Server) -> None:
    """Fuzzed input (random bytes, invalid JSON, deep nesting, huge numbers, wrong
    shapes, bad parameters): the sender gets a JSON-RPC error for each, its connection
    stays open, and the room carries on."""
    rng = random.Random(20261122)
    garbage: list[str | bytes] = [rng.randbytes(rng.randrange(1, 64)) for _ in range(10)]
    garbage += ["{not json", "[" * 50_000, "9" * 10_000, "[]", "null", '"just a string"']
    garbage += ['{"jsonrpc": "2.0", "method": 5, "id": "g"}', '{"method": "say", "id": "g"}']
    bad_params = [
        ("say", {"room": "fuzz", "text": 5}),
        ("say", {"room": "fuzz", "text": ""}),
        ("say", {"room": "fuzz", "text": None}),
        ("say", {"room": "fuzz", "text": ["x"]}),
        ("say", {"room": "fuzz"}),
        ("say", {"text": "x"}),
        ("say", ["x"]),
        ("say", {"room": "", "text": "x"}),
        ("say", {"room": "a.b", "text": "x"}),
        ("say", {"room": "with space", "text": "x"}),
        ("say", {"room": "x" * 65, "text": "x"}),
        ("say", {"room": "fuzz", "text": "x", "extra": 1}),
        ("typing", None),
        ("nope", {"text": "x"}),
    ]
    ann = await open_chat(chat_server, "ann")
    ben = await open_chat(chat_server, "ben")
    try:
        await enter(ann, "fuzz")
        await enter(ben, "fuzz")
        for payload in garbage:
            await ann.ws.send(payload)
            reply = await ann.answer("g" if '"id": "g"' in str(payload) else None)
            assert reply["error"]["code"] in (-32700, -32600), (payload, reply)
        for method, params in bad_params:
            reply = await ann.call(method, params)
            assert reply["error"]["code"] in (-32602, -32601), (method, params, reply)
            assert reply["error"].get("data"), reply  # the reason
        # Not in the room: an application error.
        async with connect(f"{chat_server.ws}/ws/chat?name=dan") as ws:
            dan = RpcPeer(ws)
            reply = await dan.call("say", {"room": "fuzz", "text": "anyone?"})
            assert reply["error"] == {
                "code": 4001,
                "message": "join the room first",
                "data": "fuzz",
            }
        assert await ann.result("say", {"room": "fuzz", "text": "still fine"}) is None
        still_fine = {"kind": "said", "name": "ann", "text": "still fine"}
        assert (await said(ben))["data"] == still_fine  # ben saw none of the garbage
        assert (await said(ann))["data"] == still_fine
    finally:
        await ann.ws.close()
        await ben.ws.close()


dashboard_server = server_fixture("examples.dashboard:app", "The dashboard example.")


async def test_dashboard_example(dashboard_server: Server) -> None:
    async with connect(f"{dashboard_server.ws}/ws/prices") as ws:
        ticks = [await recv_json(ws) for _ in range(3)]
        seqs = [t["seq"] for t in ticks]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        assert all(t["symbol"] == "GOB" for t in ticks)
        health = await http_request(dashboard_server.port, "GET", "/health")
        assert health.json()["subscribers"] == 1


@contextlib.contextmanager
def broker(kind: str) -> Iterator[str]:
    """A broker of ``kind`` for the test, and its URL: a Redis of its own, the test run's
    Redis Cluster (the chat's keys are its own) or a nats-server of its own."""
    if kind == "redis":
        from .redis_server import RedisServer, require_redis

        redis = RedisServer(require_redis())
        try:
            redis.start()
            yield redis.url
        finally:
            redis.cleanup()
    elif kind == "redis-cluster":
        from .redis_cluster import shared_cluster

        yield shared_cluster().url
    else:
        from .nats_server import NatsServer, require_nats

        nats = NatsServer(require_nats())
        try:
            nats.start()
            yield nats.url
        finally:
            nats.cleanup()


async def worker_counts(server: Server, asks: int = 8) -> set[int]:
    """The connection counts ``/health`` gave, asked ``asks`` times (each answer is the
    count of the worker that took that request)."""
    return {
        (await http_request(server.port, "GET", "/health")).json()["connections"]
        for _ in range(asks)
    }


@pytest.mark.parametrize("kind", ["redis", "redis-cluster", "nats"])
async def test_chat_example_on_two_workers(kind: str) -> None:
    """The documented command: GOBSTOPPER_BROKER_URL=... granian --workers 2
    --respawn-failed-workers; users on either worker see each other in the room's
    presence, come, talk and go."""
    argv = granian_command("examples.chat:app", "rsgi", 0)
    argv[argv.index("--workers") + 1] = "2"
    argv.insert(-1, "--respawn-failed-workers")
    with broker(kind) as url:
        server = start("", "rsgi", {"GOBSTOPPER_BROKER_URL": url}, command=argv)
        names: list[str] = []
        peers: list[RpcPeer] = []

        async def both_workers_answer() -> bool:
            return {0, 1} <= await worker_counts(server)

        try:
            for i in itertools.count():
                name = f"user{i}"
                names.append(name)
                peer = await open_chat(server, name)
                peers.append(peer)
                if i == 0:
                    # Granian listens once one worker is up: wait for the other (one
                    # connection open, its worker counts 1, the other 0).
                    await wait_until(both_workers_answer)
                # The answer lists everyone so far, whichever worker they are on; each
                # of them is told of the newcomer.
                presence = await enter(peer, "lobby")
                assert sorted(presence["users"]) == names, presence
                for each in peers[:-1]:
                    joined = await presence_diff(each, "join", name)
                    assert [m["meta"]["name"] for m in joined] == [name]
                # Enough users, some on each worker (the count of neither is all or none).
                if i >= 7 and any(0 < n < len(peers) for n in await worker_counts(server)):
                    break
                assert i < 24, "every user landed on the same worker"
            assert await peers[3].result("say", {"room": "lobby", "text": "across workers"}) is None
            across = {"kind": "said", "name": "user3", "text": "across workers"}
            for peer in peers:
                assert (await said(peer))["data"] == across
            await peers[0].ws.close()
            for peer in peers[1:]:
                assert len(await presence_diff(peer, "leave", "user0")) == 1
            health = (await http_request(server.port, "GET", "/health")).json()
            assert health["status"] == "ok" and health["broker"]["connected"] is True
        finally:
            for peer in peers:
                await peer.ws.close()
            server.stop()


rpc_server = server_fixture("examples.rpc:app", "The JSON-RPC example.")


async def test_rpc_example(rpc_server: Server) -> None:
    async with connect(f"{rpc_server.ws}/rpc") as ws, connect(f"{rpc_server.ws}/rpc") as other:
        await ws.send('{"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}')
        assert await recv_json(ws) == {"jsonrpc": "2.0", "result": 5, "id": 1}
        await ws.send('{"jsonrpc": "2.0", "method": "divide", "params": {"a": 1, "b": 0}, "id": 2}')
        assert await recv_json(ws) == {
            "jsonrpc": "2.0",
            "error": {"code": 4000, "message": "division by zero", "data": {"a": 1}},
            "id": 2,
        }
        await ws.send("{garbage")  # an error for this request, not a closed connection
        assert (await recv_json(ws))["error"]["code"] == -32700
        batch = [
            {"jsonrpc": "2.0", "method": "whoami", "id": "w"},
            {"jsonrpc": "2.0", "method": "add", "params": [1, 1]},  # a notification
        ]
        await ws.send(json.dumps(batch))
        assert await recv_json(ws) == [{"jsonrpc": "2.0", "result": "127.0.0.1", "id": "w"}]
        await other.send('{"jsonrpc": "2.0", "method": "add", "params": [1, "x"], "id": 3}')
        reply = await recv_json(other)
        assert reply["error"]["code"] == -32602
        await ws.send('{"jsonrpc": "2.0", "method": "add", "params": [0.5, 0.25], "id": 4}')
        assert await recv_json(ws) == {"jsonrpc": "2.0", "result": 0.75, "id": 4}


feed_server = server_fixture(
    "examples.feed:app", "The feed example (history, a ticker) under granian.", ("rsgi",)
)


async def test_feed_example_ticks_and_resumes_from_a_position(feed_server: Server) -> None:
    """Items tick on ``feed`` with offsets that grow by one; a client resuming from an
    earlier position gets the ones in between, in order, then the live ones."""
    from gobstopper.client import CallError, ChannelMessage, Client, Position

    def offset(message: ChannelMessage) -> int:
        assert message.offset is not None, message  # a channel with history
        return message.offset

    async with Client(f"{feed_server.ws}/rpc", timeout=WAIT) as client:
        feed = await client.subscribe("feed")
        assert feed.position is not None  # the answer gave one before any message
        ticks = [await feed.get(WAIT) for _ in range(3)]
        numbers = [m.data["n"] for m in ticks]
        offsets = [offset(m) for m in ticks]
        assert offsets == list(range(offsets[0], offsets[0] + 3)), ticks
        assert numbers == list(range(numbers[0], numbers[0] + 3)), ticks
        assert all(isinstance(m.data["at"], str) for m in ticks)
        assert feed.position == ticks[-1].position

        # Clients may publish to the feed (a numbered item), and nowhere else.
        assert await client.publish("feed", {"n": -1}, echo=True) == 1
        mine = await feed.get(WAIT)
        while mine.data != {"n": -1}:
            mine = await feed.get(WAIT)
        with pytest.raises(CallError) as refused:
            await client.publish("elsewhere", 1)
        assert refused.value.code == -32001

        # Another client resumes after the first tick: it gets everything in between,
        # the publication of the first client included, once each and in order.
        first = ticks[0]
        assert first.epoch is not None
        async with Client(f"{feed_server.ws}/rpc", timeout=WAIT) as late:
            resumed = await late.subscribe("feed", since=Position(offset(first), first.epoch))
            got = [await resumed.get(WAIT) for _ in range(offset(mine) - offset(first) + 2)]
        # The ones in between (replayed before subscribe() returned), then live ones.
        expected = list(range(offset(first) + 1, offset(mine) + 3))
        assert [m.offset for m in got] == expected, got
        assert [m.data for m in got[:2]] == [t.data for t in ticks[1:]]
        assert {"n": -1} in [m.data for m in got]

        history = await client.history("feed", limit=5)
        assert [m.offset for m in history.publications] == list(
            range(history.position.offset - 4, history.position.offset + 1)
        )

    page = await http_request(feed_server.port, "GET", "/")
    assert page.status == 200 and b'<script src="/gobstopper.js">' in page.body
    assert b'client.subscribe("feed"' in page.body and b"onRecoveryFailed" in page.body
    script = await http_request(feed_server.port, "GET", "/gobstopper.js")
    assert script.status == 200


def test_feed_example_tick_period_from_the_environment() -> None:
    from examples.feed import tick_period

    assert tick_period({}) == 0.5
    assert tick_period({"FEED_TICK": "0"}) == 0.0
    assert tick_period({"FEED_TICK": "0.05"}) == 0.05
    for bad in ("-1", "soon", "nan", ""):
        with pytest.raises(ValueError, match="FEED_TICK"):
            tick_period({"FEED_TICK": bad})


async def test_api_publish_example() -> None:
    """The documented commands: the server with a key, clients on their channels, and
    the module's publisher reaching them from another process."""
    key = "example-key-" + "0" * 20
    server = start("examples.api_publish:app", "rsgi", {"GOBSTOPPER_API_KEY": key})
    try:
        async with connect(f"{server.ws}/rpc?user=ann") as ws:
            ann = RpcPeer(ws)
            for channel in ("news", "user.ann"):
                await ann.result("rpc.subscribe", {"channel": channel})
            denied = await ann.call("rpc.subscribe", {"channel": "user.ben"})
            assert denied["error"]["message"] == "Access denied"
            url = f"{server.http}/api"
            for channel, data in (("news", '{"title": "hello"}'), ("user.ann", '"for ann"')):
                run = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "examples.api_publish", channel, data, "--url", url],
                    cwd=ROOT,
                    env={**os.environ, "GOBSTOPPER_API_KEY": key},
                    capture_output=True,
                    text=True,
                    timeout=WAIT * 2,
                )
                assert run.returncode == 0, run.stderr
                assert json.loads(run.stdout) == {"delivered": 1, "published": False}
                assert await ann.push("rpc.message") == {
                    "channel": channel,
                    "data": json.loads(data),
                }
    finally:
        server.stop()


def test_api_publish_example_needs_a_key() -> None:
    # start() reports a server that exits at once, with its log.
    with pytest.raises(RuntimeError, match="set GOBSTOPPER_API_KEY"):
        start("examples.api_publish:app", "rsgi").stop()


def test_auth_example_needs_a_secret() -> None:
    # No secret written in the source to fall back on: it says which variable to set.
    with pytest.raises(RuntimeError, match="set EXAMPLE_JWT_SECRET"):
        start("examples.auth:app", "rsgi", {"EXAMPLE_JWT_SECRET": ""}).stop()


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def auth_example(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The JWT example, with tokens that live two seconds."""
    env = {"EXAMPLE_TOKEN_SECONDS": "2", "EXAMPLE_JWT_SECRET": "an example secret " * 2}
    server = start("examples.auth:app", request.param, env)
    yield server
    server.stop()


async def test_auth_example(auth_example: Server) -> None:
    async def issue(user: str) -> str:
        answer = await http_request(auth_example.port, "GET", f"/token?user={user}")
        assert answer.status == 200, answer.body
        return answer.body.decode()

    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{auth_example.ws}/rpc"):
            pass
    assert info.value.response.status_code == 401
    async with connect(f"{auth_example.ws}/rpc?token={await issue('ann')}") as ws:
        peer = RpcPeer(ws)
        assert await peer.result("hello") == "hello ann"
        assert (await peer.result("me"))["meta"] == {"name": "Ann"}
        due = await peer.push("rpc.refresh_due")
        refreshed = await peer.result("rpc.refresh", {"token": await issue("ann")})
        assert refreshed["user"] == "ann" and refreshed["expires_at"] > due["expires_at"]
        # Not refreshed again: told, then closed when the new token expires.
        await peer.push("rpc.refresh_due")
        closing = await peer.push("rpc.event", "rpc.close")
        assert closing["data"] == {"code": 4001, "reason": "credential expired"}
        await asyncio.wait_for(ws.wait_closed(), WAIT)


presence_server = server_fixture("examples.presence:app", "The presence example.", ("rsgi",))


async def test_presence_example_lists_users_and_their_comings_and_goings(
    presence_server: Server,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{presence_server.ws}/rpc"):
            pass
    assert refused.value.response.status_code == 401  # nobody without a ?name=
    async with connect(f"{presence_server.ws}/rpc?name=ann") as ws:
        ann = RpcPeer(ws)
        state = (await ann.result("rpc.subscribe", ["chat.lobby"]))["presence"]
        assert list(state["users"]) == ["ann"] and state["users"]["ann"][0]["meta"] == {
            "name": "ann"
        }
        async with connect(f"{presence_server.ws}/rpc?name=bob") as other:
            bob = RpcPeer(other)
            await bob.result("rpc.subscribe", ["chat.lobby"])
            joined = await ann.push("rpc.presence_diff")
            assert (joined["event"], joined["user"]) == ("join", "bob")
        left = await ann.push("rpc.presence_diff")
        assert (left["event"], left["user"]) == ("leave", "bob")
