"""Commands for one connection from another node: close it, subscribe it to a channel,
and the history policies every node tells the cluster (two nodes on one memory hub)."""

from __future__ import annotations

import pytest

from gobstopper import Config, WebSocketManager
from gobstopper.brokers import MemoryBroker, MemoryHub
from gobstopper.messages import RPC
from gobstopper.messages.history import POLICIES, parse_policies

from ..integration.helpers import wait_until
from .rpc_peer import served


async def node(hub: MemoryHub) -> RPC:
    manager = WebSocketManager(Config.load({}), MemoryBroker(hub))
    await manager.start()
    rpc = RPC(manager)
    rpc.keep_history("feed.*", size=10, ttl=60)
    rpc.keep_history("feed.slow", size=5, ttl=30)  # never chosen: feed.* comes first
    return rpc


async def test_a_connection_is_closed_and_subscribed_from_another_node() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    async with served(a) as peer:
        conn_id = (await peer.call("rpc.info"))["result"]["id"]
        assert await b.subscribe_connection(conn_id, "news.*")
        await wait_until(lambda: a.subscriptions(conn_id) == {"news.*"}, 2)
        await b.publish("news.sport", "goal")
        assert (await peer.frame())["params"] == {"channel": "news.sport", "data": "goal"}
        assert await b.unsubscribe_connection(conn_id, "news.*")
        await wait_until(lambda: not a.subscriptions(conn_id), 2)

        assert await b.manager.disconnect(conn_id, 4003, "banned")
        await wait_until(lambda: peer.transport.closed is not None, 2)
        assert peer.transport.closed[0] == 4003
    assert not await b.manager.disconnect("nobody")
    assert not await b.subscribe_connection("nobody", "news.*")
    for bad in (1001, 2999, 5000):
        with pytest.raises(ValueError):
            await b.manager.disconnect(conn_id, bad)
    with pytest.raises(ValueError):
        await b.subscribe_connection(conn_id, "news..x")
    for rpc in (a, b):
        await rpc.manager.stop()


async def test_every_node_tells_the_cluster_which_channels_keep_history() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    entries = await a.manager.broker.presence(POLICIES + "messages:rpc")  # type: ignore[union-attr]
    assert parse_policies(entries) == [("feed.*", 10, 60.0), ("feed.slow", 5, 30.0)]
    await b.manager.stop()
    entries = await a.manager.broker.presence(POLICIES + "messages:rpc")  # type: ignore[union-attr]
    assert parse_policies(entries) == [("feed.*", 10, 60.0), ("feed.slow", 5, 30.0)]
    await a.manager.stop()


async def test_one_connections_commands_run_in_the_order_they_came() -> None:
    hub = MemoryHub()
    a, b = await node(hub), await node(hub)
    async with served(a) as peer:
        conn_id = (await peer.call("rpc.info"))["result"]["id"]
        # feed.x keeps history: subscribing reads the store, and the unsubscribe sent
        # right behind it must wait for it rather than find nothing to undo.
        await b.subscribe_connection(conn_id, "feed.x")
        await b.unsubscribe_connection(conn_id, "feed.x")
        await b.subscribe_connection(conn_id, "marker")
        await wait_until(lambda: "marker" in a.subscriptions(conn_id), 2)
        assert a.subscriptions(conn_id) == {"marker"}
    for rpc in (a, b):
        await rpc.manager.stop()


async def test_a_users_room_is_only_that_users() -> None:
    manager = WebSocketManager(Config.load({}))
    async with served(RPC(manager)) as peer:
        conn = manager.get((await peer.call("rpc.info"))["result"]["id"])
        assert conn is not None and conn.user is None
        with pytest.raises(ValueError, match="room of a user's connections"):
            await conn.join("user:ann")
        await conn.join("users")  # a name that merely starts alike is a room like any
