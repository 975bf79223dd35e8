"""Every example runs as the docs say and does what they claim."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from .helpers import http_request
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


async def recv_json(ws: ClientConnection) -> object:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


chat_server = server_fixture("examples.chat:app", "The chat example under granian.")


async def test_chat_example(chat_server: Server) -> None:
    url = f"{chat_server.ws}/ws/chat/lobby"
    async with connect(f"{url}?name=ann") as ann:
        assert await recv_json(ann) == {"type": "join", "name": "ann", "members": ["ann"]}
        async with connect(f"{url}?name=ben") as ben:
            joined = {"type": "join", "name": "ben", "members": ["ann", "ben"]}
            assert await recv_json(ann) == joined
            assert await recv_json(ben) == joined
            async with connect(f"{chat_server.ws}/ws/chat/elsewhere?name=cat") as cat:
                await asyncio.wait_for(cat.recv(), 5)  # cat's own join notice, in another room
                await ann.send(json.dumps({"text": "hello"}))
                said = {"type": "message", "from": "ann", "text": "hello"}
                assert await recv_json(ann) == said
                assert await recv_json(ben) == said
                health = await http_request(chat_server.port, "GET", "/health")
                assert health.json()["connections"] == 3
            # cat's room is not ours: nothing from it reached ann.
        assert await recv_json(ann) == {"type": "leave", "name": "ben", "members": ["ann"]}
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):  # no name
            pass
    assert info.value.response.status_code == 400
    page = await http_request(chat_server.port, "GET", "/")
    assert b"/ws/chat/" in page.body


async def test_chat_example_answers_garbage_and_nobody_else_notices(chat_server: Server) -> None:
    """Fuzzed input (random bytes, invalid JSON, deep nesting, huge numbers, wrong
    shapes): the sender gets an error message for each, and the room carries on."""
    rng = random.Random(20261122)
    garbage: list[str | bytes] = [rng.randbytes(rng.randrange(1, 64)) for _ in range(10)]
    garbage += ["{not json", "[" * 50_000, "9" * 10_000, '{"text": 5}', "[]", "null"]
    garbage += ['{"text": ""}', '"just a string"', '{"text": null}', '{"text": ["x"]}']
    url = f"{chat_server.ws}/ws/chat/fuzz"
    async with connect(f"{url}?name=ann") as ann:
        await recv_json(ann)
        async with connect(f"{url}?name=ben") as ben:
            await recv_json(ann)
            await recv_json(ben)
            for payload in garbage:
                await ann.send(payload)
                reply = await recv_json(ann)
                assert isinstance(reply, dict) and reply["type"] == "error", (payload, reply)
            await ann.send(json.dumps({"text": "still fine"}))
            said = {"type": "message", "from": "ann", "text": "still fine"}
            assert await recv_json(ben) == said  # ben saw none of the garbage
            assert await recv_json(ann) == said


dashboard_server = server_fixture("examples.dashboard:app", "The dashboard example.")


async def test_dashboard_example(dashboard_server: Server) -> None:
    async with connect(f"{dashboard_server.ws}/ws/prices") as ws:
        ticks = [await recv_json(ws) for _ in range(3)]
        seqs = [t["seq"] for t in ticks]  # type: ignore[index]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        assert all(t["symbol"] == "GOB" for t in ticks)  # type: ignore[index]
        health = await http_request(dashboard_server.port, "GET", "/health")
        assert health.json()["subscribers"] == 1


async def test_chat_example_on_two_workers_through_redis(tmp_path: Path) -> None:
    """The documented command: GOBSTOPPER_BROKER_URL=redis://... granian --workers 2."""
    from .redis_server import RedisServer, require_redis

    redis = RedisServer(require_redis())
    redis.start()
    argv = granian_command("examples.chat:app", "rsgi", 0)
    argv[argv.index("--workers") + 1] = "2"
    server = start("", "rsgi", {"GOBSTOPPER_BROKER_URL": redis.url}, command=argv)
    names = [f"user{i}" for i in range(8)]
    clients: list[ClientConnection] = []
    try:
        for i, name in enumerate(names):
            ws = await connect(f"{server.ws}/ws/chat/lobby?name={name}")
            clients.append(ws)
            # Each join notice lists everyone so far, whichever worker they are on.
            joined = await recv_json(ws)
            assert joined == {"type": "join", "name": name, "members": sorted(names[: i + 1])}
            for earlier in clients[:-1]:
                assert await recv_json(earlier) == joined
        await clients[3].send(json.dumps({"text": "across workers"}))
        said = {"type": "message", "from": "user3", "text": "across workers"}
        for ws in clients:
            assert await recv_json(ws) == said
        health = (await http_request(server.port, "GET", "/health")).json()
        assert health["status"] == "ok" and health["broker"]["connected"] is True
    finally:
        for ws in clients:
            await ws.close()
        server.stop()
        redis.cleanup()


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
        assert (await recv_json(ws))["error"]["code"] == -32700  # type: ignore[index]
        batch = [
            {"jsonrpc": "2.0", "method": "whoami", "id": "w"},
            {"jsonrpc": "2.0", "method": "add", "params": [1, 1]},  # a notification
        ]
        await ws.send(json.dumps(batch))
        assert await recv_json(ws) == [{"jsonrpc": "2.0", "result": "127.0.0.1", "id": "w"}]
        await other.send('{"jsonrpc": "2.0", "method": "add", "params": [1, "x"], "id": 3}')
        reply = await recv_json(other)
        assert reply["error"]["code"] == -32602  # type: ignore[index]
        await ws.send('{"jsonrpc": "2.0", "method": "add", "params": [0.5, 0.25], "id": 4}')
        assert await recv_json(ws) == {"jsonrpc": "2.0", "result": 0.75, "id": 4}
