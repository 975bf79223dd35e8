"""The message layer's presence on one node (no sockets): the subscribe answer's state,
the diffs pushed to subscribers, ``rpc.presence``, and what is not tracked."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from gobstopper.messages import RPC

from .rpc_peer import ServedPeer, served
from .test_presence_tracker import until


def endpoint() -> RPC:
    rpc = RPC(can_subscribe=lambda state, channel: channel != "room.secret")
    rpc.track_presence("room.*")
    return rpc


async def diff(peer: ServedPeer) -> dict[str, Any]:
    frame = await peer.frame()
    assert frame["method"] == "rpc.presence_diff", frame
    return frame["params"]  # type: ignore[no-any-return]


def conns(metas: list[dict[str, Any]]) -> list[str]:
    return [m["conn"] for m in metas]


async def test_subscribers_get_the_state_then_each_user_level_change() -> None:
    rpc = endpoint()
    async with served(rpc, id="b1", user="bob") as bob:
        answer = await bob.call("rpc.subscribe", {"channel": "room.1"})
        assert answer["result"]["presence"] == {
            "channel": "room.1",
            "users": {"bob": [{"conn": "b1", "meta": {}}]},
            "connections": 1,
            "unique_users": 1,
        }
        async with served(rpc, id="a1", user="ann", meta={"tab": 1}) as ann1:
            first = await ann1.call("rpc.subscribe", ["room.1"])
            assert first["result"]["presence"]["unique_users"] == 2
            assert await diff(bob) == {
                "channel": "room.1",
                "event": "join",
                "user": "ann",
                "metas": [{"conn": "a1", "meta": {"tab": 1}}],
            }
            async with served(rpc, id="a2", user="ann", encoding="msgpack") as ann2:
                second = await ann2.call("rpc.subscribe", ["room.1"])
                assert conns(second["result"]["presence"]["users"]["ann"]) == ["a1", "a2"]
                joined = await diff(bob)
                assert (joined["event"], conns(joined["metas"])) == ("update", ["a1", "a2"])
                # ann's first tab sees the second come. (No subscriber got a diff before
                # its own answer, whose state is newer: ``call`` takes one frame only.)
                tab = await diff(ann1)
                assert (tab["event"], conns(tab["metas"])) == ("update", ["a1", "a2"])
                answer = await bob.call("rpc.presence", {"channel": "room.1"})
                assert answer["result"]["connections"] == 3
            # ann's second tab closed: an update, not a leave.
            gone = await diff(bob)
            assert (gone["event"], conns(gone["metas"])) == ("update", ["a1"])
        left = await diff(bob)
        assert (left["event"], left["user"], conns(left["metas"])) == ("leave", "ann", ["a1"])


async def test_a_diff_reaches_msgpack_subscribers_in_their_encoding() -> None:
    rpc = endpoint()
    async with served(rpc, user="bob", encoding="msgpack") as bob:
        await bob.call("rpc.subscribe", ["room.2"])
        async with served(rpc, id="c", user="cat") as cat:
            await cat.call("rpc.subscribe", ["room.2"])
            assert isinstance(bob.transport.sent[-1], bytes)
            assert (await diff(bob))["user"] == "cat"


async def test_untracked_channels_and_patterns_push_nothing() -> None:
    rpc = endpoint()
    async with served(rpc, user="bob") as bob, served(rpc, user="ann") as ann:
        plain = await bob.call("rpc.subscribe", ["other"])
        assert "presence" not in plain["result"]
        pattern = await bob.call("rpc.subscribe", ["room.*"])
        assert "presence" not in pattern["result"]
        await ann.call("rpc.subscribe", ["other"])
        await ann.call("rpc.subscribe", ["room.*"])
        # rpc.presence works for any channel name, tracked or not.
        state = (await bob.call("rpc.presence", ["other"]))["result"]
        assert (state["connections"], sorted(state["users"])) == (2, ["ann", "bob"])
        assert await bob.call("rpc.info") is not None  # and no diff came meanwhile
        assert all(b"presence_diff" not in str(f).encode() for f in bob.transport.sent)


async def test_presence_is_checked_like_a_subscription() -> None:
    rpc = endpoint()
    async with served(rpc, user="bob") as bob:
        denied = await bob.call("rpc.presence", {"channel": "room.secret"})
        assert denied["error"]["code"] == -32001
        invalid = await bob.call("rpc.presence", {"channel": "room.*"})
        assert invalid["error"]["code"] == -32602
    with pytest.raises(ValueError):
        rpc.track_presence("bad..pattern")
    with pytest.raises(ValueError):
        await rpc.presence("room.*")
    assert (await rpc.presence("room.9")).as_dict() == {
        "users": {},
        "connections": 0,
        "unique_users": 0,
    }


async def test_a_state_over_the_message_limit_is_an_error_and_no_subscription() -> None:
    rpc = endpoint()
    big = {"pad": "x" * 900}
    async with contextlib.AsyncExitStack() as stack:
        for i in range(4):
            peer = await stack.enter_async_context(
                served(rpc, id=f"u{i}", user=f"u{i}", meta=big, max_message_bytes=4096)
            )
            answer = await peer.call("rpc.subscribe", ["room.1"])
            assert "result" in answer, i  # 1, 2, 3 members of ~1 KiB: it fits
        last = await stack.enter_async_context(
            served(rpc, id="u4", user="u4", meta=big, max_message_bytes=4096)
        )
        answer = await last.call("rpc.subscribe", ["room.1"])
        # Five members' metas do not fit: the client is told, and is not subscribed
        # (it would otherwise close on a message over its limit, come back, and again).
        assert answer["error"] == {
            "code": -32603,
            "message": "Internal error",
            "data": "answer over the message limit",
        }
        assert all(len(raw) <= 4096 for raw in last.transport.sent)
        assert "room.1" not in rpc.subscriptions("u4")
        state = await rpc.presence("room.1")
        assert sorted(state.users) == ["u0", "u1", "u2", "u3"]
        assert last.transport.closed is None  # still connected


async def test_a_batch_answers_with_the_state_as_it_is_queued() -> None:
    rpc = endpoint()
    go = asyncio.Event()

    @rpc.method("hold")
    async def hold() -> str:
        await go.wait()
        return "ok"

    async with served(rpc, id="b1", user="bob") as bob:
        bob.send_obj(
            [
                {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["room.1"], "id": 1},
                {"jsonrpc": "2.0", "method": "hold", "id": 2},
            ]
        )
        # bob's subscription is made; its answer waits for the rest of the batch.
        await until(lambda: "b1" in rpc.manager.members("channel:room.1"))
        async with served(rpc, id="a1", user="ann") as ann:
            await ann.call("rpc.subscribe", ["room.1"])
            go.set()
            batch = await bob.frame()
            # ann joined before bob's answer was queued: the answer shows her, and no
            # older diff came before it (a client drops those, and would never show ann).
            assert isinstance(batch, list), batch
            state = next(r for r in batch if r["id"] == 1)["result"]["presence"]
            assert sorted(state["users"]) == ["ann", "bob"]
        left = await diff(bob)
        assert (left["event"], left["user"]) == ("leave", "ann")
