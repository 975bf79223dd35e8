"""Dispatch on a served connection: batches, notifications, tasks and their limit,
cancellation, streams, rate limits kept on the peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gobstopper import Config, WebSocketManager
from gobstopper.messages import RPC
from gobstopper.messages.codec import JSON
from gobstopper.messages.dispatch import Dispatcher, Peer
from gobstopper.messages.protocol import (
    INVALID_REQUEST,
    MAX_BATCH,
    RATE_LIMITED,
    REQUEST_CANCELLED,
    TOO_MANY_TASKS,
)
from gobstopper.messages.pushes import Pushes
from gobstopper.messages.subscriptions import SubscriptionIndex

from .fake_transport import make
from .rpc_peer import ServedPeer, served


def endpoint(**options: Any) -> tuple[RPC, asyncio.Event, list[Any]]:
    """An endpoint with a concurrent call that waits for ``release``, a stream and a
    concurrent notification target that records what it got."""
    rpc = RPC(**options)
    release = asyncio.Event()
    seen: list[Any] = []

    @rpc.method(concurrent=True)
    async def wait(tag: str) -> str:
        await release.wait()
        return tag

    @rpc.method()
    async def quick() -> str:
        return "quick"

    @rpc.method(concurrent=True)
    async def record(value: int) -> None:
        seen.append(value)

    @rpc.method()
    async def count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    return rpc, release, seen


def request(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


async def frames(peer: ServedPeer, n: int) -> list[Any]:
    return [await peer.frame() for _ in range(n)]


async def test_a_concurrent_call_does_not_hold_up_the_next_message() -> None:
    rpc, release, _ = endpoint()
    async with served(rpc) as peer:
        peer.send_obj(request("wait", ["slow"], id=1))
        assert await peer.call("quick", id=2) == {"jsonrpc": "2.0", "result": "quick", "id": 2}
        release.set()
        assert await peer.frame() == {"jsonrpc": "2.0", "result": "slow", "id": 1}


async def test_cancel_stops_a_running_call_and_answers_it() -> None:
    rpc, _, _ = endpoint()
    async with served(rpc) as peer:
        peer.send_obj(request("wait", ["never"], id="w"))
        peer.send_obj(request("rpc.cancel", {"id": "w"}, id="c"))
        answers = {a["id"]: a for a in await frames(peer, 2)}
        assert answers["c"]["result"] is True
        assert answers["w"]["error"]["code"] == REQUEST_CANCELLED
        # Answered: the id is free, and cancelling it again finds nothing.
        assert (await peer.call("rpc.cancel", {"id": "w"}, id="c2"))["result"] is False


async def test_a_cancel_in_the_same_batch_answers_the_request_it_stopped() -> None:
    rpc, _, _ = endpoint()
    async with served(rpc) as peer:
        peer.send_obj([request("wait", ["x"], id=5), request("rpc.cancel", [5], id=6)])
        batch, cancelled = await frames(peer, 2)
        assert batch == [{"jsonrpc": "2.0", "result": True, "id": 6}]
        assert cancelled["id"] == 5 and cancelled["error"]["code"] == REQUEST_CANCELLED


async def test_running_tasks_are_bounded_and_ids_unique_per_connection() -> None:
    rpc, release, _ = endpoint(max_tasks=2)
    async with served(rpc) as peer:
        peer.send_obj(request("wait", ["a"], id=1))
        assert (await peer.call("wait", ["again"], id=1))["error"] == {
            "code": INVALID_REQUEST,
            "message": "Invalid Request",
            "data": "id 1 is in use",
        }
        peer.send_obj(request("wait", ["b"], id=2))
        over = await peer.call("wait", ["c"], id=3)
        assert over["error"]["code"] == TOO_MANY_TASKS and over["error"]["data"] == {"limit": 2}
        async with served(rpc) as other:  # the limit is per connection
            other.send_obj(request("wait", ["d"], id=1))
            release.set()
            assert (await other.frame())["result"] == "d"
        assert sorted(a["result"] for a in await frames(peer, 2)) == ["a", "b"]


async def test_streams_send_items_then_their_count() -> None:
    rpc, _, _ = endpoint()
    async with served(rpc) as peer:
        peer.send_obj(request("count", [3], id="s"))
        items = await frames(peer, 4)
        assert [i["params"] for i in items[:3]] == [{"id": "s", "item": n} for n in range(3)]
        assert all(i["method"] == "rpc.stream" for i in items[:3])
        assert items[3] == {"jsonrpc": "2.0", "result": 3, "id": "s"}
        # A stream as a notification has nowhere to send its items: nothing runs.
        assert await peer.ask({"jsonrpc": "2.0", "method": "count", "params": [2]}) is None


async def test_concurrent_notifications_run_and_are_never_answered() -> None:
    rpc, _, seen = endpoint()
    async with served(rpc) as peer:
        for value in (1, 2):
            assert await peer.ask({"jsonrpc": "2.0", "method": "record", "params": [value]}) is None
        assert seen == [1, 2]


async def test_batches_keep_order_and_have_a_size_limit() -> None:
    rpc, _, _ = endpoint()
    async with served(rpc) as peer:
        answer = await peer.ask(
            [request("quick", id=1), {"jsonrpc": "2.0", "method": "quick"}, request("nope", id=2)]
        )
        assert [a["id"] for a in answer] == [1, 2] and answer[0]["result"] == "quick"
        too_many = await peer.ask([request("quick", id=i) for i in range(MAX_BATCH + 1)])
        assert too_many["error"]["code"] == INVALID_REQUEST and too_many["id"] is None
        assert too_many["error"]["data"] == f"over {MAX_BATCH} requests"


async def test_msgpack_connections_are_answered_in_binary() -> None:
    rpc, _, _ = endpoint()
    async with served(rpc, encoding="msgpack") as peer:
        assert (await peer.call("quick"))["result"] == "quick"
        assert isinstance(peer.transport.sent[-1], bytes)
        assert (await peer.call("rpc.info"))["result"]["encoding"] == "msgpack"


async def test_rate_limit_buckets_live_on_the_peer() -> None:
    manager = WebSocketManager(Config.load({}))
    dispatcher = Dispatcher(Pushes(manager, "t", ("json",), SubscriptionIndex(), {}))

    async def ping() -> str:
        return "pong"

    dispatcher.register("ping", ping, "call", limit=(1, 60.0))
    ws, _ = make()
    await ws.accept()
    peer = Peer(manager.add(ws), JSON)
    frame = '{"jsonrpc":"2.0","method":"ping","id":1}'
    assert (await dispatcher.dispatch(peer, frame))["result"] == "pong"
    assert (await dispatcher.dispatch(peer, frame))["error"]["code"] == RATE_LIMITED
    assert list(peer.buckets) == ["ping"] and not peer.closing
    assert not vars(ws.state)  # nothing kept in the application's namespace


async def test_a_limit_that_closes_answers_then_closes() -> None:
    rpc = RPC()

    @rpc.method(limit=1, period=60, close_on_limit=True)
    async def ping() -> str:
        return "pong"

    async with served(rpc) as peer:
        assert (await peer.call("ping"))["result"] == "pong"
        peer.send_obj(request("ping", id=2))
        assert (await peer.frame())["error"]["code"] == RATE_LIMITED
        await asyncio.wait_for(peer.transport.closed_event.wait(), 2)
        assert peer.transport.closed == (1008, "rate limit exceeded")
