"""The Python client's channel positions and recovery, against a server played by hand
(``client_server.py``): positions per subscription, ``since`` on every renewal, replayed
messages in order, ``RecoveryFailed`` where the stream broke, and ``history()``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gobstopper.client import (
    CallError,
    ChannelMessage,
    Client,
    History,
    Position,
    RecoveryFailed,
)
from gobstopper.messages import protocol

from .client_server import FakeServer, answer, connected, message, reconnected, subscribed

E = "epoch-1"


async def test_messages_without_positions_are_unchanged(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    news, request = await subscribed(client, sock, "news.*", {})
    plain, _ = await subscribed(client, sock, "plain", {})
    assert request["params"] == {"channel": "news.*"}
    sock.push(message("news.a", 1), message("plain", {"x": 2}))
    assert await news.get(1) == ChannelMessage("news.a", 1)
    got = await plain.get(1)
    assert got == ChannelMessage("plain", {"x": 2}) and got.position is None
    assert (got.offset, got.epoch) == (None, None)
    assert news.position is None and plain.position is None
    _, found = await reconnected(client, server, sock, 2)
    assert found["plain"]["params"] == {"channel": "plain"}  # no position: no since
    assert found["news.*"]["params"] == {"channel": "news.*"}


async def test_each_exact_subscription_tracks_its_position(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    feed, _ = await subscribed(client, sock, "feed.a", {"offset": 4, "epoch": E})
    every, _ = await subscribed(client, sock, "feed.*", {})
    other, _ = await subscribed(client, sock, "feed.b", {"offset": 10, "epoch": E})
    assert feed.position == Position(4, E) and other.position == Position(10, E)
    sock.push(message("feed.a", "five", 5, E), message("feed.a", "six", 6, E))
    sock.push(message("feed.b", "eleven", 11, E))
    assert await feed.get(1) == ChannelMessage("feed.a", "five", 5, E)
    assert feed.position == Position(6, E)  # updated as messages are queued, not read
    assert other.position == Position(11, E)
    assert every.position is None  # a pattern has no position; its messages do
    assert (await every.get(1)).position == Position(5, E)
    # A second subscription to the channel starts where the first stands.
    again = await client.subscribe("feed.a")
    assert again.position == Position(6, E)


async def test_a_renewal_resumes_from_the_position_and_keeps_the_order(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    feed, _ = await subscribed(client, sock, "feed.a", {"offset": 2, "epoch": E})
    every, _ = await subscribed(client, sock, "feed.*", {})
    sock.push(message("feed.a", 3, 3, E))
    assert (await feed.get(1)).data == 3
    new, found = await reconnected(client, server, sock, 2)
    since = {"offset": 3, "epoch": E}
    assert found["feed.a"]["params"] == {"channel": "feed.a", "since": since}
    assert found["feed.*"]["params"] == {"channel": "feed.*"}
    # The replay, the answer and a live message in one read, before the renewal resumes.
    reply = {"channel": "feed.a", "subscriptions": 2, "offset": 5, "epoch": E, "recovered": True}
    new.push(message("feed.a", 4, 4, E), message("feed.a", 5, 5, E), answer(found["feed.a"], reply))
    new.push(message("feed.a", 6, 6, E), answer(found["feed.*"], {}))
    new.push(answer(found[protocol.INFO], {"id": "c2"}))
    await client.ready(2)
    assert [(await feed.get(1)).data for _ in range(3)] == [4, 5, 6]
    assert feed.position == Position(6, E)
    assert [(await every.get(1)).data for _ in range(4)] == [3, 4, 5, 6]
    # And the next renewal resumes from there.
    _, found = await reconnected(client, server, new, 2)
    assert found["feed.a"]["params"]["since"] == {"offset": 6, "epoch": E}


async def test_an_unrecovered_renewal_raises_once_where_the_stream_broke(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    feed, _ = await subscribed(client, sock, "feed.a", {"offset": 1, "epoch": E})
    sock.push(message("feed.a", "before", 2, E))  # queued, not read yet
    new, found = await reconnected(client, server, sock, 1)
    reply = {"channel": "feed.a", "subscriptions": 1, "offset": 9, "epoch": "epoch-2"}
    new.push(answer(found["feed.a"], reply | {"recovered": False}))
    new.push(message("feed.a", "after", 10, "epoch-2"), answer(found[protocol.INFO], {"id": "x"}))
    await client.ready(2)
    assert feed.position == Position(10, "epoch-2")
    seen: list[Any] = []
    with pytest.raises(RecoveryFailed) as failed:
        async for msg in feed:
            seen.append(msg.data)
    assert seen == ["before"]
    assert failed.value.channel == "feed.a"
    assert failed.value.position == Position(9, "epoch-2")
    async for msg in feed:  # once: iterating again goes on with the live messages
        seen.append(msg.data)
        break
    assert seen == ["before", "after"]
    assert feed.dropped == 0


async def test_a_renewal_from_a_position_the_server_no_longer_takes(
    client: Client, server: FakeServer
) -> None:
    """The channel lost its history (-32602 for since): the break is marked and the
    client subscribes without a position."""
    sock = await connected(client, server)
    feed, _ = await subscribed(client, sock, "feed.a", {"offset": 1, "epoch": E})
    new, found = await reconnected(client, server, sock, 1)
    refused = protocol.RPCError(protocol.INVALID_PARAMS, "Invalid params", "no history")
    new.push(protocol.error(found["feed.a"]["id"], refused))
    again = await new.request(protocol.SUBSCRIBE)
    assert again["params"] == {"channel": "feed.a"}
    new.push(answer(again, {"channel": "feed.a", "subscriptions": 1}), message("feed.a", "live"))
    new.push(answer(found[protocol.INFO], {"id": "x"}))
    await client.ready(2)
    with pytest.raises(RecoveryFailed) as failed:
        await feed.get(1)
    assert failed.value.position is None and feed.position is None
    assert (await feed.get(1)).data == "live"


async def test_subscribe_since_a_saved_position(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    with pytest.raises(ValueError, match="pattern"):
        await client.subscribe("feed.*", since=Position(1, E))
    reply = {"offset": 5, "epoch": E, "recovered": True}
    task = asyncio.ensure_future(client.subscribe("feed.a", since=Position(3, E)))
    request = await sock.request(protocol.SUBSCRIBE)
    assert request["params"] == {"channel": "feed.a", "since": {"offset": 3, "epoch": E}}
    sock.push(message("feed.a", 4, 4, E), message("feed.a", 5, 5, E))
    sock.push(answer(request, {"channel": "feed.a", "subscriptions": 1} | reply))
    feed = await asyncio.wait_for(task, 2)
    assert feed.position == Position(5, E)
    assert [(await feed.get(1)).data for _ in range(2)] == [4, 5]
    # A second subscription from an older position: it gets the replay, the first skips
    # what it queued already.
    task = asyncio.ensure_future(client.subscribe("feed.a", since=Position(4, E)))
    request = await sock.request(protocol.SUBSCRIBE)
    sock.push(message("feed.a", 5, 5, E), answer(request, {"channel": "feed.a"} | reply))
    sock.push(message("feed.a", 6, 6, E))
    older = await asyncio.wait_for(task, 2)
    assert [(await older.get(1)).data for _ in range(2)] == [5, 6]
    assert (await feed.get(1)).data == 6
    assert older.position == feed.position == Position(6, E)


async def test_subscribe_since_a_position_too_old(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    task = asyncio.ensure_future(client.subscribe("feed.a", since=Position(3, "gone")))
    request = await sock.request(protocol.SUBSCRIBE)
    reply = {"channel": "feed.a", "subscriptions": 1, "offset": 7, "epoch": E, "recovered": False}
    sock.push(answer(request, reply), message("feed.a", 8, 8, E))
    feed = await asyncio.wait_for(task, 2)
    with pytest.raises(RecoveryFailed) as failed:
        await feed.get(1)
    assert failed.value.position == Position(7, E)
    assert (await feed.get(1)).data == 8
    assert feed.position == Position(8, E)
    # A channel without history refuses since: the caller gets the error.
    task = asyncio.ensure_future(client.subscribe("plain", since=Position(1, E)))
    request = await sock.request(protocol.SUBSCRIBE)
    sock.push(protocol.error(request["id"], protocol.RPCError(protocol.INVALID_PARAMS, "no")))
    with pytest.raises(CallError) as refused:
        await asyncio.wait_for(task, 2)
    assert refused.value.code == protocol.INVALID_PARAMS


async def test_history(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    task = asyncio.ensure_future(client.history("feed.a", limit=2))
    request = await sock.request(protocol.HISTORY)
    assert request["params"] == {"channel": "feed.a", "limit": 2}
    pubs = [{"offset": 4, "data": "d"}, {"offset": 5, "data": "e"}]
    sock.push(answer(request, {"publications": pubs, "offset": 5, "epoch": E}))
    history = await asyncio.wait_for(task, 2)
    assert history == History(
        [ChannelMessage("feed.a", "d", 4, E), ChannelMessage("feed.a", "e", 5, E)],
        Position(5, E),
        None,
    )
    task = asyncio.ensure_future(client.history("feed.a", since=Position(1, "old")))
    request = await sock.request(protocol.HISTORY)
    assert request["params"] == {"channel": "feed.a", "since": {"offset": 1, "epoch": "old"}}
    sock.push(answer(request, {"publications": [], "offset": 5, "epoch": E, "recovered": False}))
    history = await asyncio.wait_for(task, 2)
    assert (history.publications, history.recovered) == ([], False)
    with pytest.raises(ValueError):
        await client.history("feed.*")


def test_history_answers_are_checked() -> None:
    with pytest.raises(ValueError):
        History.parse("a", {"publications": []})  # no position
    with pytest.raises(ValueError):
        History.parse("a", {"publications": [{"data": 1}], "offset": 1, "epoch": E})
    parsed = History.parse("a", {"publications": [], "offset": 0, "epoch": E, "recovered": True})
    assert parsed.recovered is True and parsed.position == Position(0, E)


async def test_a_full_queue_drops_messages_never_the_break(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    feed, _ = await subscribed(client, sock, "feed.a", {"offset": 0, "epoch": E}, maxsize=2)
    sock.push(message("feed.a", 1, 1, E))
    new, found = await reconnected(client, server, sock, 1)
    new.push(answer(found["feed.a"], {"offset": 5, "epoch": E, "recovered": False}))
    new.push(*(message("feed.a", n, n, E) for n in (6, 7, 8)))
    new.push(answer(found[protocol.INFO], {"id": "x"}))
    await client.ready(2)
    with pytest.raises(RecoveryFailed):  # message 1 was the oldest: dropped
        await feed.get(1)
    assert [(await feed.get(1)).data for _ in range(2)] == [7, 8]
    assert feed.dropped == 2


async def test_a_subscription_asked_while_disconnected_is_sent_once(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    sock.drop()
    task = asyncio.ensure_future(client.subscribe("feed.a", since=Position(3, E)))
    await asyncio.sleep(0)
    new = await server.accept()
    found = await new.renewal(1)  # rpc.info, and the subscription's own request only
    assert found["feed.a"]["params"]["since"] == {"offset": 3, "epoch": E}
    reply = {"channel": "feed.a", "offset": 7, "epoch": E, "recovered": False}
    new.push(answer(found["feed.a"], reply), answer(found[protocol.INFO], {"id": "x"}))
    feed = await asyncio.wait_for(task, 2)
    await client.ready(2)
    with pytest.raises(RecoveryFailed):
        await feed.get(1)
    with pytest.raises(asyncio.TimeoutError):
        await feed.get(0.05)  # once
    assert new.nothing_sent()


async def test_a_renewal_the_server_cannot_do_now_starts_over_and_keeps_the_position(
    client: Client, server: FakeServer
) -> None:
    """-32603 (the server's history store is away) is no refusal: the client connects
    again and resumes from the same position, the subscription alive."""
    sock = await connected(client, server)
    feed, _ = await subscribed(client, sock, "feed.a", {"offset": 4, "epoch": E})
    new, found = await reconnected(client, server, sock, 1)
    unavailable = protocol.RPCError(
        protocol.INTERNAL_ERROR, "Internal error", "history unavailable"
    )
    new.push(protocol.error(found["feed.a"]["id"], unavailable))
    new.push(answer(found[protocol.INFO], {"id": "x"}))
    third = await server.accept()  # it dropped that connection and came back
    again = await third.renewal(1)
    assert again["feed.a"]["params"]["since"] == {"offset": 4, "epoch": E}
    third.push(message("feed.a", "five", offset=5, epoch=E))
    third.push(
        answer(
            again["feed.a"],
            {"channel": "feed.a", "subscriptions": 1, "offset": 5, "epoch": E, "recovered": True},
        )
    )
    third.push(answer(again[protocol.INFO], {"id": "y"}))
    await asyncio.wait_for(client.ready(3), 2)
    assert (await feed.get(1)).data == "five"  # no RecoveryFailed: nothing was missed
    assert feed.position == Position(5, E)
