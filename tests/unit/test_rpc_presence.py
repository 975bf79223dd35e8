"""The message layer's presence on one node (no sockets): the subscribe answer's state,
the diffs pushed to subscribers, ``rpc.presence``, and what is not tracked."""

from __future__ import annotations

from typing import Any

import pytest

from gobstopper.messages import RPC

from .rpc_peer import ServedPeer, served


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
