"""Channel history in the message layer, on the in-memory transport: positions on pushes,
resuming from a position exactly at the seam, and rpc.history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gobstopper import BrokerUnavailable, Config, WebSocketManager
from gobstopper.history import MemoryHistory, Position, Window
from gobstopper.messages import RPC

from .fake_transport import release_until
from .rpc_peer import ServedPeer, served


def endpoint(**options: Any) -> RPC:
    rpc = RPC(WebSocketManager(), **options)
    rpc.keep_history("feed.*", size=5, ttl=60)
    return rpc


async def subscribe(peer: ServedPeer, params: dict[str, Any]) -> tuple[list[Any], Any]:
    """Subscribe; the pushes that came before the answer, and the answer."""
    peer.send_obj({"jsonrpc": "2.0", "method": "rpc.subscribe", "params": params, "id": "s"})
    pushes = []
    while True:
        frame = await peer.frame()
        if frame.get("id") == "s":
            return pushes, frame
        pushes.append(frame)


def offsets(pushes: list[Any]) -> list[int]:
    return [p["params"]["offset"] for p in pushes]


async def test_pushes_of_a_kept_channel_carry_their_position() -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        before, answer = await subscribe(peer, {"channel": "feed.a"})
        assert before == []
        epoch = answer["result"]["epoch"]
        assert answer["result"]["offset"] == 0 and "recovered" not in answer["result"]
        for i in range(3):
            await rpc.publish("feed.a", {"n": i})
        pushes = [await peer.frame() for _ in range(3)]
        assert [p["params"] for p in pushes] == [
            {"offset": i + 1, "epoch": epoch, "channel": "feed.a", "data": {"n": i}}
            for i in range(3)
        ]


async def test_a_channel_without_history_is_as_before() -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        _, answer = await subscribe(peer, {"channel": "news"})
        assert answer["result"] == {"channel": "news", "subscriptions": 1}
        await rpc.publish("news", 1)
        assert (await peer.frame())["params"] == {"channel": "news", "data": 1}


async def test_resuming_replays_what_was_missed_then_goes_live() -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        _, answer = await subscribe(peer, {"channel": "feed.a"})
        epoch = answer["result"]["epoch"]
        await rpc.publish("feed.a", "one")
        seen = await peer.frame()
    # Away: two publications missed.
    await rpc.publish("feed.a", "two")
    await rpc.publish("feed.a", "three")
    since = {"offset": seen["params"]["offset"], "epoch": epoch}
    async with served(rpc) as peer:
        replayed, answer = await subscribe(peer, {"channel": "feed.a", "since": since})
        assert [p["params"]["data"] for p in replayed] == ["two", "three"]
        assert offsets(replayed) == [2, 3]
        assert answer["result"] == {
            "channel": "feed.a",
            "subscriptions": 1,
            "offset": 3,
            "epoch": epoch,
            "recovered": True,
        }
        await rpc.publish("feed.a", "four")
        assert offsets([await peer.frame()]) == [4]


@pytest.mark.parametrize(
    ("since", "why"),
    [
        (lambda epoch: {"offset": 1, "epoch": epoch}, "fell out of the window of 5"),
        (lambda epoch: {"offset": 3, "epoch": "made-up"}, "another epoch"),
        (lambda epoch: {"offset": 99, "epoch": epoch}, "ahead of the stream"),
    ],
)
async def test_a_position_that_cannot_be_followed_says_so_and_replays_nothing(
    since: Any, why: str
) -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        _, answer = await subscribe(peer, {"channel": "feed.a"})
        epoch = answer["result"]["epoch"]
    for i in range(8):
        await rpc.publish("feed.a", i)
    async with served(rpc) as peer:
        replayed, answer = await subscribe(peer, {"channel": "feed.a", "since": since(epoch)})
        assert replayed == [], why
        assert answer["result"]["recovered"] is False, why
        assert (answer["result"]["offset"], answer["result"]["epoch"]) == (8, epoch)
        await rpc.publish("feed.a", "live")
        assert offsets([await peer.frame()]) == [9]  # live goes on after the position


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"channel": "feed.*", "since": {"offset": 0, "epoch": "e"}}, "a pattern"),
        ({"channel": "news", "since": {"offset": 0, "epoch": "e"}}, "keeps no history"),
        ({"channel": "feed.a", "since": {"offset": -1, "epoch": "e"}}, "negative"),
        ({"channel": "feed.a", "since": {"offset": True, "epoch": "e"}}, "a bool"),
        ({"channel": "feed.a", "since": {"offset": 2**70, "epoch": "e"}}, "huge"),
        ({"channel": "feed.a", "since": {"offset": 1}}, "no epoch"),
        ({"channel": "feed.a", "since": {"offset": 1, "epoch": "x" * 500}}, "a long epoch"),
        ({"channel": "feed.a", "since": [1, "e"]}, "not an object"),
    ],
)
async def test_bad_positions_are_refused_and_change_nothing(params: Any, why: str) -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        _, answer = await subscribe(peer, params)
        assert answer["error"]["code"] == -32602, why
        info = await peer.call("rpc.info")
        assert info["result"]["subscriptions"] == [], why


async def test_the_seam_is_exact_under_concurrent_publishing() -> None:
    """Publications made while the resuming subscriber's history read is in flight reach
    it once each, in order, between the replay and the live ones."""
    rpc = endpoint()
    store = rpc.manager.cluster.history
    assert isinstance(store, MemoryHistory)
    reading = asyncio.Event()
    go_on = asyncio.Event()
    real_read = store.read

    async def slow_read(channel: str, since: int | None = None, limit: int | None = None) -> Window:
        window = await real_read(channel, since, limit)
        reading.set()
        await go_on.wait()  # publications go on meanwhile
        return window

    for i in range(1, 4):
        await rpc.publish("feed.a", i)
    epoch = (await rpc.history("feed.a")).position.epoch
    store.read = slow_read  # type: ignore[method-assign]
    async with served(rpc) as peer:
        peer.send_obj(
            {
                "jsonrpc": "2.0",
                "method": "rpc.subscribe",
                "params": {"channel": "feed.a", "since": {"offset": 1, "epoch": epoch}},
                "id": "s",
            }
        )
        await asyncio.wait_for(reading.wait(), 2)
        for i in range(4, 8):  # after the read: held for the subscriber
            await rpc.publish("feed.a", i)
        go_on.set()
        # The replay, the answer (the position the replay ends at), then what was held.
        frames = [await peer.frame() for _ in range(7)]
        answer = frames.pop(2)
        assert answer["result"]["recovered"] is True and answer["result"]["offset"] == 3
        assert offsets(frames) == [2, 3, 4, 5, 6, 7]
        await rpc.publish("feed.a", 8)
        assert offsets([await peer.frame()]) == [8]


async def test_msgpack_subscribers_get_the_position_too() -> None:
    rpc = endpoint()
    async with served(rpc, encoding="msgpack") as peer:
        _, answer = await subscribe(peer, {"channel": "feed.a"})
        await rpc.publish("feed.a", b"\x00raw")
        push = await peer.frame()
        assert push["params"] == {
            "offset": 1,
            "epoch": answer["result"]["epoch"],
            "channel": "feed.a",
            "data": "AHJhdw==",  # bytes travel as base64 in JSON form, as for any push
        }


async def test_history_reads_the_last_or_what_follows_a_position() -> None:
    rpc = endpoint(can_subscribe=lambda state, channel: channel != "feed.secret")
    for i in range(1, 8):
        await rpc.publish("feed.a", i)
    epoch = (await rpc.history("feed.a")).position.epoch
    async with served(rpc) as peer:
        last = (await peer.call("rpc.history", {"channel": "feed.a", "limit": 2}))["result"]
        assert last == {
            "publications": [{"offset": 6, "data": 6}, {"offset": 7, "data": 7}],
            "offset": 7,
            "epoch": epoch,
        }
        since = {"offset": 5, "epoch": epoch}
        after = (await peer.call("rpc.history", {"channel": "feed.a", "since": since}))["result"]
        assert [p["offset"] for p in after["publications"]] == [6, 7] and after["recovered"]
        gone = {"offset": 1, "epoch": epoch}
        lost = (await peer.call("rpc.history", {"channel": "feed.a", "since": gone}))["result"]
        assert lost["publications"] == [] and lost["recovered"] is False
        denied = await peer.call("rpc.history", {"channel": "feed.secret"})
        assert denied["error"]["code"] == -32001
        for params in (
            {"channel": "news"},
            {"channel": "feed.*"},
            {"channel": "feed.a", "limit": -1},
        ):
            assert (await peer.call("rpc.history", params))["error"]["code"] == -32602, params


async def test_server_code_reads_history_and_refuses_a_channel_without() -> None:
    rpc = endpoint()
    await rpc.publish("feed.a", {"x": 1})
    history = await rpc.history("feed.a")
    assert [(m.offset, m.data) for m in history.messages] == [(1, {"x": 1})]
    assert history.recovered is None
    assert (await rpc.history("feed.a", since=Position(1, history.position.epoch))).messages == []
    with pytest.raises(ValueError, match="no history"):
        await rpc.history("news")


def test_keeping_history_checks_its_arguments() -> None:
    rpc = RPC(WebSocketManager())
    for bad in (dict(size=0, ttl=1), dict(size=1, ttl=0), dict(size=True, ttl=1)):
        with pytest.raises(ValueError):
            rpc.keep_history("feed.*", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pattern"):
        rpc.keep_history("feed..x")


async def test_the_answer_follows_the_replay_on_a_slow_socket() -> None:
    """Replayed publications wait in the connection's queue when its socket is slow; the
    subscription's answer must not overtake them, or the client would take their
    positions for old ones."""
    rpc = endpoint()
    rpc.keep_history("slow.*", size=100, ttl=60)
    for i in range(20):
        await rpc.publish("slow.a", i)
    epoch = (await rpc.history("slow.a")).position.epoch
    async with served(rpc) as peer:
        peer.transport.stalled = True  # sends start but do not finish
        peer.send_obj(
            {
                "jsonrpc": "2.0",
                "method": "rpc.subscribe",
                "params": {"channel": "slow.a", "since": {"offset": 0, "epoch": epoch}},
                "id": "s",
            }
        )
        await release_until(peer.transport, 21)
        frames = [await peer.frame() for _ in range(21)]
        assert offsets(frames[:20]) == list(range(1, 21))
        assert frames[20]["id"] == "s" and frames[20]["result"]["offset"] == 20


async def test_a_position_from_another_channel_is_not_taken_for_this_one() -> None:
    rpc = endpoint()
    for i in range(3):
        await rpc.publish("feed.a", i)
        await rpc.publish("feed.b", i)
    other = (await rpc.history("feed.b")).position  # offset 3, feed.b's epoch
    async with served(rpc) as peer:
        since = {"offset": 1, "epoch": other.epoch}
        replayed, answer = await subscribe(peer, {"channel": "feed.a", "since": since})
        assert replayed == [] and answer["result"]["recovered"] is False


async def test_a_store_that_cannot_keep_a_publication_sends_it_nowhere() -> None:
    rpc = endpoint(client_publish=True)
    store = rpc.manager.cluster.history
    assert isinstance(store, MemoryHistory)

    async def refuse(channel: str, data: bytes, size: int, ttl: float) -> Position:
        raise BrokerUnavailable("redis://store", "connection refused")

    async with served(rpc) as subscriber, served(rpc) as publisher:
        await subscribe(subscriber, {"channel": "feed.a"})
        store.append = refuse  # type: ignore[method-assign]
        with pytest.raises(BrokerUnavailable):
            await rpc.publish("feed.a", "lost")
        answer = await publisher.call("rpc.publish", {"channel": "feed.a", "data": "x"})
        assert answer["error"]["code"] == -32603
        assert answer["error"]["data"] == "history unavailable"
        info = await subscriber.call("rpc.info")  # nothing came before this answer
        assert info["result"]["subscriptions"] == ["feed.a"]


def slow_reads(rpc: RPC) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the store's reads wait: (set once a read is in flight, set to let it end)."""
    store = rpc.manager.cluster.history
    assert isinstance(store, MemoryHistory)
    reading, go_on = asyncio.Event(), asyncio.Event()
    real_read = store.read

    async def slow_read(channel: str, since: int | None = None, limit: int | None = None) -> Window:
        window = await real_read(channel, since, limit)
        reading.set()
        await go_on.wait()
        return window

    store.read = slow_read  # type: ignore[method-assign]
    return reading, go_on


async def test_a_pattern_held_beside_the_name_does_not_overtake_the_replay() -> None:
    """The connection also gets the channel through a pattern: while the name resumes,
    nothing reaches it live, or the client would take the live offset for its position
    and drop the replay as old."""
    rpc = endpoint()
    for i in range(1, 4):
        await rpc.publish("feed.a", i)
    epoch = (await rpc.history("feed.a")).position.epoch
    async with served(rpc) as peer:
        await subscribe(peer, {"channel": "feed.*"})
        reading, go_on = slow_reads(rpc)
        since = {"offset": 1, "epoch": epoch}
        peer.send_obj(
            {
                "jsonrpc": "2.0",
                "method": "rpc.subscribe",
                "params": {"channel": "feed.a", "since": since},
                "id": "s",
            }
        )
        await asyncio.wait_for(reading.wait(), 2)
        await rpc.publish("feed.a", 4)  # during the read
        go_on.set()
        frames = [await peer.frame() for _ in range(4)]
        assert [f.get("id") or f["params"]["offset"] for f in frames] == [2, 3, "s", 4]


async def test_since_on_a_channel_already_subscribed_says_whether_it_stands_there() -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        _, first = await subscribe(peer, {"channel": "feed.a"})
        epoch = first["result"]["epoch"]
        await rpc.publish("feed.a", 1)
        assert offsets([await peer.frame()]) == [1]
        _, behind = await subscribe(
            peer, {"channel": "feed.a", "since": {"offset": 0, "epoch": epoch}}
        )
        assert behind["result"]["recovered"] is False  # not replayed to it twice: said
        _, there = await subscribe(
            peer, {"channel": "feed.a", "since": {"offset": 1, "epoch": epoch}}
        )
        assert there["result"]["recovered"] is True and there["result"]["offset"] == 1


async def test_a_replay_bigger_than_the_queue_goes_in_parts() -> None:
    """A window three times the connection's queue: replayed whole, in order, without
    the client being taken for a slow consumer."""
    rpc = RPC(WebSocketManager(Config.load({}, send_queue_messages=100)))
    rpc.keep_history("big", size=500, ttl=60)
    for i in range(300):
        await rpc.publish("big", i)
    epoch = (await rpc.history("big")).position.epoch
    async with served(rpc) as peer:
        since = {"offset": 0, "epoch": epoch}
        replayed, answer = await subscribe(peer, {"channel": "big", "since": since})
        assert offsets(replayed) == list(range(1, 301))
        assert answer["result"]["recovered"] is True and answer["result"]["offset"] == 300
        await rpc.publish("big", "live")
        assert offsets([await peer.frame()]) == [301]


async def test_kept_channels_refuse_what_a_replay_cannot_honour() -> None:
    rpc = endpoint()
    with pytest.raises(ValueError, match="history"):
        await rpc.publish("feed.a", 1, predicate=lambda conn: True)


async def test_a_failed_resume_leaves_no_subscription_behind() -> None:
    rpc = endpoint()
    store = rpc.manager.cluster.history
    assert isinstance(store, MemoryHistory)

    async def refuse(channel: str, since: int | None = None, limit: int | None = None) -> Window:
        raise BrokerUnavailable("redis://store", "connection refused")

    store.read = refuse  # type: ignore[method-assign]
    async with served(rpc) as peer:
        _, answer = await subscribe(peer, {"channel": "feed.a"})
        assert answer["error"]["code"] == -32603
        assert await rpc.subscribers("feed.a") == []  # presence: not a subscriber
        info = await peer.call("rpc.info")
        assert info["result"]["subscriptions"] == []


async def test_a_node_that_missed_publications_closes_its_subscribers_to_resume() -> None:
    """Its link to the broker dropped while others published: the next offset it gets
    jumps. Its subscribers must not see a silent gap: they are closed, and their clients
    resume from their positions (and get the missing ones from the store)."""
    from gobstopper import envelope
    from gobstopper.brokers import MemoryBroker, MemoryHub
    from gobstopper.envelope import Envelope

    hub = MemoryHub()
    manager = WebSocketManager(Config.load({}), MemoryBroker(hub))
    await manager.start()
    rpc = RPC(manager)
    rpc.keep_history("feed.*", size=10, ttl=60)
    other = MemoryBroker(hub)  # another node, whose publications this one gets
    await other.start(lambda channel, data: None)

    async def arrives(offset: int) -> None:
        note = Envelope(
            "other",
            b'{"jsonrpc":"2.0","method":"rpc.message","params":{"channel":"feed.a","data":%d}}'
            % offset,
            topic="messages:rpc",
            channel="feed.a",
            offset=offset,
            epoch="e1",
        )
        await other.publish("room:channel subscribers", envelope.encode(note))

    async with served(rpc) as peer:
        await subscribe(peer, {"channel": "feed.a"})
        await arrives(1)
        assert offsets([await peer.frame()]) == [1]
        await arrives(2)
        assert offsets([await peer.frame()]) == [2]
        await arrives(5)  # 3 and 4 never came here
        await asyncio.wait_for(peer.transport.closed_event.wait(), 2)
        assert peer.transport.closed is not None and peer.transport.closed[0] == 1012


async def test_offsets_seen_before_nobody_followed_the_channel_are_not_a_gap() -> None:
    """The node stops listening once its last subscriber leaves; a subscriber that comes
    back later finds the channel far ahead: that is no gap of this node's."""
    from gobstopper import envelope
    from gobstopper.brokers import MemoryBroker, MemoryHub
    from gobstopper.envelope import Envelope

    hub = MemoryHub()
    manager = WebSocketManager(Config.load({}), MemoryBroker(hub))
    await manager.start()
    rpc = RPC(manager)
    rpc.keep_history("feed.*", size=10, ttl=60)
    other = MemoryBroker(hub)
    await other.start(lambda channel, data: None)

    async def arrives(offset: int) -> None:
        raw = b'{"jsonrpc":"2.0","method":"rpc.message","params":{"channel":"feed.a","data":%d}}'
        note = Envelope(
            "other", raw % offset, topic="messages:rpc", channel="feed.a", offset=offset, epoch="e"
        )
        await other.publish("room:channel subscribers", envelope.encode(note))

    async with served(rpc) as peer:
        await subscribe(peer, {"channel": "feed.a"})
        await arrives(1)
        assert offsets([await peer.frame()]) == [1]
    async with served(rpc) as peer:  # much later: 2..40 went by while nobody was here
        await subscribe(peer, {"channel": "feed.a"})
        await arrives(41)
        assert offsets([await peer.frame()]) == [41]  # delivered, not taken for a gap
        assert peer.transport.closed is None


MESSAGE = b'{"jsonrpc":"2.0","method":"rpc.message","params":{"channel":"feed.a","data":%d}}'


async def test_the_store_bounds_a_replay_not_this_workers_size() -> None:
    """Another worker (or a former configuration) keeps more of the channel than this
    one's ``size``: a resume still gets everything after its position."""
    rpc = endpoint()  # size=5 here
    store = rpc.manager.cluster.history
    for i in range(1, 13):  # kept with a size of 50 elsewhere: "messages:rpc:<channel>"
        await store.append("messages:rpc:feed.a", MESSAGE % i, 50, 60)
    epoch = (await rpc.history("feed.a")).position.epoch
    async with served(rpc) as peer:
        since = {"offset": 2, "epoch": epoch}
        replayed, answer = await subscribe(peer, {"channel": "feed.a", "since": since})
        assert offsets(replayed) == list(range(3, 13))
        assert answer["result"]["recovered"] is True and answer["result"]["offset"] == 12


async def test_a_batch_answer_waits_behind_a_replay_too() -> None:
    rpc = endpoint()
    for i in range(10):
        await rpc.publish("feed.a", i)
    epoch = (await rpc.history("feed.a")).position.epoch
    async with served(rpc) as peer:
        peer.transport.stalled = True
        since = {"offset": 5, "epoch": epoch}  # 6..10 are kept (size 5)
        peer.send_obj(
            [
                {
                    "jsonrpc": "2.0",
                    "method": "rpc.subscribe",
                    "params": {"channel": "feed.a", "since": since},
                    "id": 1,
                },
                {
                    "jsonrpc": "2.0",
                    "method": "rpc.subscribe",
                    "params": {"channel": "news"},
                    "id": 2,
                },
            ]
        )
        await release_until(peer.transport, 6)
        frames = [await peer.frame() for _ in range(6)]
        assert offsets(frames[:5]) == list(range(6, 11))
        assert [a["id"] for a in frames[5]] == [1, 2]  # the batch's answer, behind them
        assert frames[5][0]["result"]["recovered"] is True


async def test_after_a_replay_a_late_live_copy_of_a_replayed_offset_is_skipped() -> None:
    """The store is read on one connection, live publications come on another: one the
    replay already carried may still arrive live afterwards. It is not sent twice."""
    from gobstopper import envelope
    from gobstopper.brokers import MemoryBroker, MemoryHub
    from gobstopper.envelope import Envelope

    hub = MemoryHub()
    manager = WebSocketManager(Config.load({}), MemoryBroker(hub))
    await manager.start()
    rpc = RPC(manager)
    rpc.keep_history("feed.*", size=10, ttl=60)
    for i in range(1, 4):
        await hub.history.append("messages:rpc:feed.a", MESSAGE % i, 10, 60)
    epoch = (await rpc.history("feed.a")).position.epoch
    other = MemoryBroker(hub)
    await other.start(lambda channel, data: None)

    async def arrives(offset: int) -> None:
        note = Envelope(
            "other",
            MESSAGE % offset,
            topic="messages:rpc",
            channel="feed.a",
            offset=offset,
            epoch=epoch,
        )
        await other.publish("room:channel subscribers", envelope.encode(note))

    async with served(rpc) as peer:
        replayed, answer = await subscribe(
            peer, {"channel": "feed.a", "since": {"offset": 0, "epoch": epoch}}
        )
        assert offsets(replayed) == [1, 2, 3] and answer["result"]["recovered"] is True
        await arrives(3)  # late: the replay had it
        await arrives(4)
        assert offsets([await peer.frame()]) == [4]
        assert peer.transport.closed is None
