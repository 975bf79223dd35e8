"""Channels routed by pattern, as the NATS broker does it, without a server: a memory
broker that matches ``chan:`` patterns itself (``wildcards``) stands in for NATS, and two
message-layer endpoints on two managers share it. Checks that a publication travels on
``chan:<channel>`` to the nodes whose patterns match, and nowhere else.
"""

from __future__ import annotations

import pytest

from gobstopper import Config, WebSocketManager
from gobstopper.brokers import MemoryBroker, MemoryHub
from gobstopper.messages import RPC, channels

from .rpc_peer import served


class PatternBroker(MemoryBroker):
    """A memory broker whose ``chan:`` subscriptions are patterns, as on NATS; it counts
    what reaches its node."""

    wildcards = True

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.received: list[str] = []

    async def start(self, handler: object) -> None:
        def counting(channel: str, data: bytes) -> None:
            self.received.append(channel)
            handler(channel, data)  # type: ignore[operator]

        await super().start(counting)

    async def publish(self, channel: str, data: bytes) -> None:
        if not channel.startswith("chan:"):
            await super().publish(channel, data)
            return
        name = channel[len("chan:") :]
        for subscribed, nodes in list(self.hub.subscribers.items()):
            if subscribed.startswith("chan:") and channels.matches(subscribed[5:], name):
                for broker in list(nodes.values()):
                    if broker._handler is not None:
                        broker._handler(subscribed, data)


async def endpoint(hub: MemoryHub) -> tuple[RPC, PatternBroker]:
    broker = PatternBroker(hub)
    manager = WebSocketManager(Config.load({}), broker)
    await manager.start()
    rpc = RPC(manager)

    @rpc.method()
    async def announce(channel: str, data: str) -> int:
        return int(await rpc.publish(channel, data))

    return rpc, broker


async def test_a_publication_reaches_only_the_nodes_whose_patterns_match() -> None:
    hub = MemoryHub()
    (a, a_broker), (b, b_broker) = await endpoint(hub), await endpoint(hub)
    async with served(a) as on_a, served(b) as on_b, served(b) as other_on_b:
        await on_a.call("rpc.subscribe", ["news.*"])
        await on_b.call("rpc.subscribe", ["chat.**"])
        assert "chan:chat.**" in hub.subscribers and "chan:news.*" in hub.subscribers
        b_before = list(b_broker.received)

        # From b: a's subscriber gets it through the broker; b, with no match, nothing.
        answer = await other_on_b.call("announce", ["news.sport", "goal"])
        assert answer.get("result") == 0, answer  # nobody on b subscribes to it
        push = await on_a.frame()
        assert push["params"] == {"channel": "news.sport", "data": "goal"}
        assert b_broker.received == b_before  # routed past the node without a match
        assert a_broker.received[-1] == "chan:news.*"

        # The last subscriber of a pattern leaves: its node stops following it.
        await on_a.call("rpc.unsubscribe", ["news.*"])
        assert "chan:news.*" not in hub.subscribers
        await on_b.call("rpc.unsubscribe", ["chat.**"])
        assert "chan:chat.**" not in hub.subscribers
    for rpc in (a, b):
        await rpc.manager.stop()


async def test_a_kept_publication_before_the_broker_starts_is_refused_not_kept_aside() -> None:
    from gobstopper import BrokerUnavailable

    manager = WebSocketManager(Config.load({}), MemoryBroker(MemoryHub()))  # not started
    rpc = RPC(manager)
    rpc.keep_history("feed.*", size=10, ttl=60)
    with pytest.raises(BrokerUnavailable, match="not started"):
        await rpc.publish("feed.a", 1)
    assert (await manager.cluster.history.read("messages:rpc:feed.a")).position.offset == 0
