"""The message layer on a real granian (RSGI and ASGI), with plain ``websockets`` clients
sending raw JSON-RPC and with the Python client: every error case, streams and their
cancellation, events to each target, wildcard channels, guards, rate limits, msgpack,
and subscriptions renewed after the server restarts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gobstopper.client import CallError, ChannelMessage, Client

from .helpers import WAIT
from .rpc_peer import rpc_peers
from .servers import Server, server_fixture, start

APP = "examples.rpc:app"

rpc_app = server_fixture(APP, "The message layer's example app.")
edge_app = server_fixture("tests.apps.messages:app", "The message layer's edge cases.")


async def test_every_error_case_on_the_wire(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 2) as (bad, other):
        cases: list[tuple[str, int, Any]] = [
            ("{not json", -32700, None),
            ('"just a string"', -32600, None),
            ('{"jsonrpc": "1.0", "method": "add", "id": 1}', -32600, 1),
            ('{"jsonrpc": "2.0", "method": 5, "id": 2}', -32600, 2),
            ('{"jsonrpc": "2.0", "method": "add", "params": 7, "id": 3}', -32600, 3),
            ('{"jsonrpc": "2.0", "method": "add", "id": {"x": 1}}', -32600, None),
            ("[]", -32600, None),
            ('{"jsonrpc": "2.0", "method": "nope", "id": 4}', -32601, 4),
            ('{"jsonrpc": "2.0", "method": "add", "params": [1], "id": 5}', -32602, 5),
            ('{"jsonrpc": "2.0", "method": "add", "params": [1, "x"], "id": 6}', -32602, 6),
            ('{"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "c": 2}, "id": 7}', -32602, 7),
            ('{"jsonrpc": "2.0", "method": "divide", "params": [1, 0], "id": 8}', 4000, 8),
            (
                '{"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["a..b"], "id": 9}',
                -32602,
                9,
            ),
            ('{"jsonrpc": "2.0", "method": "sum_event", "params": {"x": 1}, "id": 10}', -32602, 10),
            ('{"jsonrpc": "2.0", "method": "say", "params": {"room": 1}, "id": 11}', -32602, 11),
            ('{"jsonrpc": "2.0", "method": "secret", "id": 12}', -32001, 12),
            (
                '{"jsonrpc": "2.0", "method": "rpc.publish", "params": ["news.x", 1], "id": 13}',
                -32001,
                13,
            ),
            (
                "["
                + ",".join(['{"jsonrpc":"2.0","method":"add","params":[1,1],"id":1}'] * 101)
                + "]",
                -32600,
                None,
            ),
        ]
        for raw, code, rid in cases:
            await bad.send(raw)
            answer = await bad.recv()
            assert answer["error"]["code"] == code, (raw, answer)
            assert answer["id"] == rid, (raw, answer)
        # Binary frames carry JSON too; a batch answers each request, skips notifications.
        await bad.ws.send(b'{"jsonrpc": "2.0", "method": "add", "params": [2, 2], "id": "b"}')
        assert (await bad.recv())["result"] == 4
        await bad.send(
            '[{"jsonrpc":"2.0","method":"add","params":[1,1],"id":1},'
            '{"jsonrpc":"2.0","method":"add","params":[1,1]},'
            '{"jsonrpc":"2.0","method":"nope","id":2}, 5]'
        )
        batch = await bad.recv()
        assert [a.get("result", a.get("error", {}).get("code")) for a in batch] == [
            2,
            -32601,
            -32600,
        ]
        # The connection is still open, and the other client noticed nothing.
        assert (await bad.call("add", [1, 2]))["result"] == 3
        assert (await other.call("add", [2, 2]))["result"] == 4
        assert other.pushes == []


async def test_streams_and_cancellation(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 1) as (raw,):
        await raw.send({"jsonrpc": "2.0", "method": "count", "params": [3], "id": "s"})
        items = [await raw.push("rpc.stream") for _ in range(3)]
        assert items == [{"id": "s", "item": i} for i in range(3)]
        assert (await raw.answer("s"))["result"] == 3

        # A long stream, cancelled by its caller: the request is answered -32800 and the
        # items stop, while other calls on the connection go on being answered.
        await raw.send({"jsonrpc": "2.0", "method": "count", "params": [10_000, 0.01], "id": 9})
        assert (await raw.push("rpc.stream"))["item"] == 0
        assert (await raw.call("add", [1, 1]))["result"] == 2  # not held up by the stream
        assert (await raw.call("rpc.cancel", {"id": 9}))["result"] is True
        cancelled = await raw.answer(9)
        assert cancelled["error"] == {"code": -32800, "message": "Request cancelled"}
        raw.pushes.clear()
        await raw.nothing_more()  # no item after the cancellation's answer
        assert (await raw.call("rpc.cancel", [9]))["result"] is False

    async with Client(f"{rpc_app.ws}/rpc", timeout=WAIT) as client:
        assert [i async for i in client.stream("count", 5)] == [0, 1, 2, 3, 4]
        seen = []
        async for item in client.stream("count", 10_000, 0.01):
            seen.append(item)
            if item == 2:
                break  # leaves the loop: the client cancels the stream on the server
        assert seen == [0, 1, 2]
        with pytest.raises(CallError) as info:
            async for _ in client.stream("count", "many"):
                pass
        assert info.value.code == -32602
        assert await client.call("add", 1, 2) == 3


async def test_concurrent_calls_do_not_hold_up_the_others(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 1) as (raw,):
        await raw.send({"jsonrpc": "2.0", "method": "nap", "params": [0.3], "id": "slow"})
        await raw.send({"jsonrpc": "2.0", "method": "nap", "params": [60], "id": "long"})
        assert (await raw.call("add", [1, 1]))["result"] == 2  # answered before the naps
        assert (await raw.answer("slow"))["result"] == 0.3
        dup = await raw.call("nap", [1])  # a fresh id: runs too
        assert dup["result"] == 1
        await raw.send({"jsonrpc": "2.0", "method": "nap", "params": [1], "id": "long"})
        in_use = await raw.answer("long")  # the id of a call still running is refused
        assert in_use["error"]["code"] == -32600
        assert (await raw.call("rpc.cancel", ["long"]))["result"] is True
        assert (await raw.answer("long"))["error"]["code"] == -32800


async def test_event_guards(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 2) as (a, b):
        refused = await a.call("broadcast", {"text": "hi"})
        assert refused["error"] == {"code": -32001, "message": "Access denied", "data": "broadcast"}
        await a.call("login", ["ann"])
        assert (await a.call("broadcast", {"text": "hi"}))["result"] is None
        for x in (a, b):
            assert (await x.push("rpc.event"))["data"] == {"user": "ann", "text": "hi"}


async def test_events_reach_each_target(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 3) as (a, b, c):
        ids = [(await x.call("rpc.info"))["result"]["id"] for x in (a, b, c)]
        assert len(set(ids)) == 3
        # The sender only.
        await a.send({"jsonrpc": "2.0", "method": "sum_event", "params": [1, 2, 3.5]})
        assert await a.push("rpc.event") == {"event": "sum_result", "data": 6.5, "from": ids[0]}
        # A room (a and b), with "everyone but the sender" on join.
        assert (await a.call("join", {"room": "r"}))["result"] == [ids[0]]
        assert sorted((await b.call("join", {"room": "r"}))["result"]) == sorted(ids[:2])
        assert await a.push("rpc.event") == {
            "event": "joined",
            "data": {"id": ids[1]},
            "from": ids[1],
        }
        await b.call("say", {"room": "r", "text": "hi"})
        for x in (a, b):
            said = await x.push("rpc.event")
            assert said == {"event": "said", "data": {"id": ids[1], "text": "hi"}, "from": ids[1]}
        # Everyone.
        await c.call("shout", {"text": "all"})
        for x in (a, b, c):
            assert (await x.push("rpc.event"))["data"] == {"id": ids[2], "text": "all"}
        # One connection by id.
        assert (await a.call("whisper", {"to": ids[2], "text": "psst"}))["result"] is True
        assert (await c.push("rpc.event"))["data"] == {"id": ids[0], "text": "psst"}
        assert (await a.call("whisper", {"to": "nobody", "text": "?"}))["result"] is False
        for x in (a, b, c):
            await x.nothing_more()  # nobody got anything else


async def test_wildcard_channels(rpc_app: Server) -> None:
    subscriptions = {
        "exact": ["news.sport"],
        "star": ["news.*"],
        "middle": ["chat.*.typing"],
        "deep": ["chat.**"],
        "overlap": ["news.*", "news.sport", "news.**"],
    }
    published = [
        "news",
        "news.sport",
        "news.world",
        "news.sport.football",
        "chat",
        "chat.lobby.typing",
        "chat.lobby.message",
        "chat.x",
    ]
    expected = {
        "exact": ["news.sport"],
        "star": ["news.sport", "news.world"],
        "middle": ["chat.lobby.typing"],
        "deep": ["chat.lobby.typing", "chat.lobby.message", "chat.x"],
        "overlap": ["news.sport", "news.world", "news.sport.football"],  # each once
    }
    async with rpc_peers(rpc_app, len(subscriptions) + 1) as clients:
        publisher, *subscribers = clients
        for raw, patterns in zip(subscribers, subscriptions.values(), strict=True):
            for pattern in patterns:
                answer = await raw.call("rpc.subscribe", {"channel": pattern})
                assert answer["result"]["channel"] == pattern
        for n, channel in enumerate(published):
            answer = await publisher.call("announce", [channel, f"m{n}"])
            assert answer["result"] == sum(channel in e for e in expected.values()), channel
        for raw, want in zip(subscribers, expected.values(), strict=True):
            got = [(await raw.push("rpc.message"))["channel"] for _ in want]
            assert got == want
            await raw.nothing_more()
        # Unsubscribing stops delivery; the publisher never got anything.
        await subscribers[0].call("rpc.unsubscribe", ["news.sport"])
        assert (await publisher.call("announce", ["news.sport", "x"]))["result"] == 2
        await subscribers[0].nothing_more()
        await publisher.nothing_more()


async def test_publish_with_exclude_and_predicate(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 3) as (me, user, anon):
        for x in (me, user, anon):
            await x.call("rpc.subscribe", ["alerts.*"])
        await user.call("login", ["ann"])
        assert (await me.call("announce_to_others", ["alerts.a", "x"]))["result"] == 2
        for x in (user, anon):
            assert (await x.push("rpc.message"))["data"] == "x"
        assert (await me.call("announce_to_users", ["alerts.b", "y"]))["result"] == 1
        assert (await user.push("rpc.message"))["data"] == "y"
        for x in (me, user, anon):
            await x.nothing_more()


async def test_clients_publish_where_the_app_allows(rpc_app: Server) -> None:
    async with (
        Client(f"{rpc_app.ws}/rpc", timeout=WAIT) as a,
        Client(f"{rpc_app.ws}/rpc", timeout=WAIT) as b,
        await b.subscribe("chat.*") as chat,
        await a.subscribe("chat.*") as own,
    ):
        assert await a.publish("chat.lobby", {"text": "hi"}) == 1  # not echoed to a
        assert await chat.get(WAIT) == ChannelMessage("chat.lobby", {"text": "hi"})
        assert await a.publish("chat.lobby", "again", echo=True) == 2
        assert (await own.get(WAIT)).data == "again"
        assert (await chat.get(WAIT)).data == "again"
        with pytest.raises(CallError) as info:
            await a.publish("news.sport", 1)
        assert info.value.code == -32001
        with pytest.raises(CallError) as info:
            await a.publish("chat.*", 1)  # a pattern is not a channel
        assert info.value.code == -32602


async def test_subscription_limit(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 1) as (raw,):
        for i in range(100):
            assert (await raw.call("rpc.subscribe", [f"c.{i}"]))["result"]["subscriptions"] == i + 1
        answer = await raw.call("rpc.subscribe", ["c.100"])
        assert answer["error"] == {
            "code": -32003,
            "message": "Too many subscriptions",
            "data": {"limit": 100},
        }
        assert (await raw.call("rpc.subscribe", ["c.5"]))["result"]["subscriptions"] == 100
        await raw.call("rpc.unsubscribe", ["c.0"])
        assert (await raw.call("rpc.subscribe", ["c.100"]))["result"]["subscriptions"] == 100


async def test_guards_and_rate_limits(rpc_app: Server) -> None:
    async with rpc_peers(rpc_app, 2) as (a, b):
        assert (await a.call("secret"))["error"]["code"] == -32001
        assert (await a.call("login", ["ann"]))["result"] == "ann"
        assert (await a.call("secret"))["result"] == "for ann only"
        assert (await b.call("secret"))["error"]["code"] == -32001  # state is per connection
        for _ in range(3):
            assert (await a.call("expensive"))["result"] == "done"
        limited = await a.call("expensive")
        assert limited["error"]["code"] == -32002
        assert (await a.call("add", [1, 1]))["result"] == 2  # still open
        assert (await b.call("expensive"))["result"] == "done"  # b's own budget
        for _ in range(3):
            assert (await b.call("strict"))["result"] == "done"
        assert (await b.call("strict"))["error"]["code"] == -32002  # answered, then closed
        with pytest.raises(ConnectionClosed):
            await b.call("add", [1, 1])
        if rpc_app.interface == "asgi":
            assert b.ws.close_code == 1008  # RSGI cannot send close codes
        assert (await a.call("add", [2, 2]))["result"] == 4


async def test_msgpack_beside_json(rpc_app: Server) -> None:
    async with (
        connect(f"{rpc_app.ws}/rpc?encoding=msgpack") as packed,
        rpc_peers(rpc_app, 1) as (text,),
    ):
        request = {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
        await packed.send(msgspec.msgpack.encode(request))
        answer = msgspec.msgpack.decode(await asyncio.wait_for(packed.recv(), WAIT))
        assert answer == {"jsonrpc": "2.0", "result": 5, "id": 1}
        await packed.send(json.dumps(request))  # a text frame is a parse error here
        answer = msgspec.msgpack.decode(await asyncio.wait_for(packed.recv(), WAIT))
        assert answer["error"]["code"] == -32700
        sub = {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["news.*"], "id": 2}
        await packed.send(msgspec.msgpack.encode(sub))
        assert msgspec.msgpack.decode(await asyncio.wait_for(packed.recv(), WAIT))["id"] == 2
        await text.call("rpc.subscribe", ["news.*"])
        await text.call("announce", ["news.a", "both"])
        pushed = msgspec.msgpack.decode(await asyncio.wait_for(packed.recv(), WAIT))
        assert pushed["params"] == {"channel": "news.a", "data": "both"}
        assert (await text.push("rpc.message")) == {"channel": "news.a", "data": "both"}

    async with Client(f"{rpc_app.ws}/rpc", encoding="msgpack", timeout=WAIT) as client:
        assert await client.call("add", 1, 2) == 3
        assert [i async for i in client.stream("count", 3)] == [0, 1, 2]

    with pytest.raises(Exception) as refused:  # an unknown encoding: HTTP 400
        async with connect(f"{rpc_app.ws}/rpc?encoding=xml"):
            pass
    assert "400" in str(refused.value)


async def test_python_client_events_and_subscriptions_survive_a_restart() -> None:
    server = start(APP, "rsgi")
    try:
        async with (
            Client(f"{server.ws}/rpc", timeout=WAIT, backoff=0.05) as client,
            Client(f"{server.ws}/rpc", timeout=WAIT, backoff=0.05) as other,
        ):
            events: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
            client.on("said", lambda data, sender: events.put_nowait((data, sender)))
            assert await client.emit("join", {"room": "r"}, ack=True) == [client.id]
            await other.emit("join", {"room": "r"}, ack=True)
            await other.emit("say", {"room": "r", "text": "hello"})
            data, sender = await asyncio.wait_for(events.get(), WAIT)
            assert (data, sender) == ({"id": other.id, "text": "hello"}, other.id)

            news = await client.subscribe("news.*")
            await other.call("announce", "news.a", "before")
            assert (await news.get(WAIT)).data == "before"

            first_id = client.id
            port = server.port
            await asyncio.to_thread(server.stop)
            server = await asyncio.to_thread(start, APP, "rsgi", port=port)

            # The client reconnects by itself and renews its subscription.
            await asyncio.wait_for(client.ready(2), WAIT)
            assert client.connections == 2 and client.id not in (None, first_id)
            assert await other.call("announce", "news.b", "after") == 1
            assert await news.get(WAIT) == ChannelMessage("news.b", "after")
            await news.close()
            assert await other.call("announce", "news.c", "gone") == 0
    finally:
        server.stop()


async def test_a_stream_in_flight_fails_when_the_connection_drops() -> None:
    server = start(APP, "rsgi")
    try:
        async with Client(f"{server.ws}/rpc", timeout=WAIT, backoff=0.05) as client:
            items = client.stream("count", 100_000, 0.01)
            assert await items.__anext__() == 0
            await asyncio.to_thread(server.stop)
            # The stream may have run on: it is not resent, and says the connection went.
            with pytest.raises(ConnectionError):
                async for _ in items:
                    pass
    finally:
        server.stop()


async def test_a_cancel_in_the_same_batch_still_answers_and_frees_the_id(edge_app: Server) -> None:
    async with rpc_peers(edge_app, 1) as (raw,):
        for method in ("nap", "bad_items"):
            await raw.send(
                [
                    {
                        "jsonrpc": "2.0",
                        "method": method,
                        "params": [5] if method == "nap" else [],
                        "id": "X",
                    },
                    {"jsonrpc": "2.0", "method": "rpc.cancel", "params": ["X"], "id": "c"},
                ]
            )
            assert await raw.answer(None) == [{"jsonrpc": "2.0", "result": True, "id": "c"}]
            cancelled = await raw.answer("X")
            assert cancelled["error"]["code"] == -32800
        assert (await raw.call("nap", [0]))["result"] == 0
        answer = await raw.call("rpc.cancel", [[1]])  # not an id
        assert answer["error"]["code"] == -32602


async def test_stream_items_that_cannot_go_end_the_stream(edge_app: Server) -> None:
    async with rpc_peers(edge_app, 1) as (raw,):
        for method, params in (("bad_items", []), ("big_items", [100_000])):
            answer = await raw.call(method, params)
            assert answer["error"]["code"] == -32603, answer
            items = [p for p in raw.pushes if p["method"] == "rpc.stream"]
            assert [p["params"]["item"] for p in items] == [1 if method == "bad_items" else "small"]
            raw.pushes.clear()


async def test_running_tasks_are_bounded_and_notifications_run_beside(edge_app: Server) -> None:
    async with rpc_peers(edge_app, 1) as (raw,):
        await raw.send({"jsonrpc": "2.0", "method": "nap", "params": [30]})  # a notification
        for i in range(2):
            await raw.send({"jsonrpc": "2.0", "method": "nap", "params": [30], "id": i})
        answer = await raw.call("nap", [0])  # the fourth: over max_tasks=3
        assert answer["error"] == {
            "code": -32004,
            "message": "Too many running requests",
            "data": {"limit": 3},
        }
        await raw.call("rpc.cancel", [0])
        assert (await raw.answer(0))["error"]["code"] == -32800
        assert (await raw.call("nap", [0]))["result"] == 0  # room again


async def test_a_push_one_encoding_cannot_carry_reaches_nobody(edge_app: Server) -> None:
    async with (
        connect(f"{edge_app.ws}/rpc?encoding=msgpack") as packed,
        rpc_peers(edge_app, 2) as (publisher, text),
    ):
        sub = {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["n.*"], "id": 1}
        await packed.send(msgspec.msgpack.encode(sub))
        assert msgspec.msgpack.decode(await asyncio.wait_for(packed.recv(), WAIT))["id"] == 1
        await text.call("rpc.subscribe", ["n.*"])
        huge = 2**70  # JSON carries it, msgpack cannot
        refused = await publisher.call("rpc.publish", {"channel": "n.a", "data": huge})
        assert refused["error"]["code"] == -32602
        assert (await publisher.call("rpc.publish", {"channel": "n.a", "data": 1}))["result"] == 2
        assert (await text.push("rpc.message"))["data"] == 1  # the first to arrive
        pushed = msgspec.msgpack.decode(await asyncio.wait_for(packed.recv(), WAIT))
        assert pushed["params"]["data"] == 1


async def test_an_id_is_connected_once_per_worker(edge_app: Server) -> None:
    async with connect(f"{edge_app.ws}/rpc?id=ann"):
        with pytest.raises(Exception) as refused:
            async with connect(f"{edge_app.ws}/rpc?id=ann"):
                pass
        assert "409" in str(refused.value)
    async with rpc_peers(edge_app, 1, query="?id=ann") as (again,):  # free once it left
        assert (await again.call("rpc.info"))["result"]["id"] == "ann"
