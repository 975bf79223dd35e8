"""The in-memory broker: nodes of one process, sharing a hub. The default.

With one manager per process (the usual case) it delivers nothing anywhere else: rooms
are as wide as the process. Several managers given the same ``MemoryHub`` behave like
nodes on one Redis server, which is how the broker contract is tested.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection

from ..errors import BrokerUnavailable
from ..history.memory import MemoryHistory
from .base import Broker, BrokerHealth, MessageHandler

__all__ = ["MemoryBroker", "MemoryHub"]

logger = logging.getLogger("gobstopper.broker")


class MemoryHub:
    """What the memory brokers of one process share: subscriptions and presence."""

    def __init__(self) -> None:
        self.subscribers: dict[str, dict[str, MemoryBroker]] = {}  # channel -> node -> broker
        self.presence: dict[str, dict[str, str]] = {}  # key -> member -> node
        self.history = MemoryHistory()  # channel history, as one store for every node
        self.live: set[str] = set()  # the nodes started, not stopped


class MemoryBroker(Broker):
    """Publish/subscribe and presence within one process.

    Args:
        hub: the hub shared with other nodes (managers) of this process; without
            one, the broker is alone and the manager skips it.
    """

    def __init__(self, hub: MemoryHub | None = None) -> None:
        # Without a hub given, nobody else can reach this one's: it is alone.
        self.alone = hub is None
        self.hub = MemoryHub() if hub is None else hub
        self.history = self.hub.history
        self.node_id = uuid.uuid4().hex
        self._handler: MessageHandler | None = None
        self._channels: set[str] = set()
        self._members: set[tuple[str, str]] = set()
        self._since = time.time()

    async def start(self, handler: MessageHandler) -> None:
        self._handler = handler
        self._since = time.time()
        self.hub.live.add(self.node_id)

    async def stop(self) -> None:
        for channel in list(self._channels):
            await self.unsubscribe(channel)
        for key, member in list(self._members):
            self.presence_remove(key, member)
        self.hub.live.discard(self.node_id)
        self._handler = None
        self._since = time.time()

    async def publish(self, channel: str, data: bytes) -> None:
        if self._handler is None:
            raise BrokerUnavailable("memory://", "the broker is not started")
        for broker in tuple(self.hub.subscribers.get(channel, {}).values()):
            handler = broker._handler
            if handler is None:
                continue
            try:
                handler(channel, data)
            except Exception:
                # The receiving node's failure stays there, as it would across processes.
                logger.exception("message handler failed on %s", channel)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        self.hub.subscribers.setdefault(channel, {})[self.node_id] = self

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        nodes = self.hub.subscribers.get(channel)
        if nodes is not None:
            nodes.pop(self.node_id, None)
            if not nodes:
                del self.hub.subscribers[channel]

    def presence_add(self, key: str, member: str) -> None:
        self._members.add((key, member))
        self.hub.presence.setdefault(key, {})[member] = self.node_id

    def presence_remove(self, key: str, member: str) -> None:
        self._members.discard((key, member))
        members = self.hub.presence.get(key)
        if members is not None and members.get(member) == self.node_id:
            del members[member]
            if not members:
                del self.hub.presence[key]

    async def presence_of(self, key: str, member: str) -> str | None:
        return self.hub.presence.get(key, {}).get(member)

    async def presence(self, key: str) -> dict[str, str]:
        return dict(self.hub.presence.get(key, {}))

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        return {node for node in nodes if node in self.hub.live}

    def health(self) -> BrokerHealth:
        return BrokerHealth(
            url="memory://",
            connected=self._handler is not None,
            since=self._since,
            reconnects=0,
            last_error=None,
            dropped=0,
        )
