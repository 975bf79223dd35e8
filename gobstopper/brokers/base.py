"""The broker contract: how a manager reaches the managers of other workers and hosts.

A broker moves bytes between processes on named channels, and keeps presence: which
member ids a key (a room) has across every node, with the members of a node that died
removed within a bounded time. It knows nothing of WebSockets, JSON or rooms: the
manager encodes and decodes, and names the channels and keys.

Two implementations: ``MemoryBroker`` (the default: one process, nothing to install)
and ``RedisBroker`` (the ``redis`` extra), chosen by URL with
``broker_from_url``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from ..envelope import position_fields
from ..history.base import HistoryStore, Position

__all__ = ["Broker", "BrokerHealth", "MessageHandler"]

#: Called for every message that arrives on a subscribed channel, in arrival order:
#: ``handler(channel, data)``. It must not block: it runs on the broker's reader.
MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class BrokerHealth:
    """What a health endpoint needs to know about the broker.

    Attributes:
        url: the broker's URL, without its password.
        connected: whether messages flow to and from the broker now.
        since: when (``time.time()``) ``connected`` last changed.
        reconnects: connections re-established after a loss, since start.
        last_error: the error that ended the last connection, if any.
        dropped: messages given to ``publish`` that could not reach the broker.
    """

    url: str
    connected: bool
    since: float
    reconnects: int
    last_error: str | None
    dropped: int

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "connected": self.connected,
            "since": self.since,
            "for_seconds": round(time.time() - self.since, 3),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "dropped": self.dropped,
        }


class Broker(abc.ABC):
    """Publish/subscribe between nodes (a node is one manager in one process), and presence.

    Delivery is at most once: a message published while the broker is unreachable, or
    in flight when the connection drops, is lost (and counted in ``health().dropped``).
    Messages from one node to one channel arrive in publish order.
    """

    #: This node's id, unique across the cluster.
    node_id: str
    #: True when no other node can share this broker (a private in-memory hub): the
    #: manager then neither publishes nor records presence.
    alone: bool = False
    #: Where the nodes sharing this broker keep channel history; None: they keep none.
    history: HistoryStore | None = None
    #: True when the broker matches channel patterns itself: a subscription to
    #: ``chan:<pattern>`` (``*`` one segment, a final ``**`` one or more) receives the
    #: publications to every ``chan:<channel>`` it matches, each once, and a node gets
    #: only the publications its subscriptions match.
    wildcards: bool = False

    @abc.abstractmethod
    async def start(self, handler: MessageHandler) -> None:
        """Connect and start delivering incoming messages to ``handler``.

        A broker that cannot be reached yet does not fail here: it logs, and keeps
        trying in the background (``health()`` tells).
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop delivering, withdraw this node's presence, disconnect."""

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes) -> None:
        """Hand ``data`` to the broker for every node subscribed to ``channel``
        (this node included, if subscribed).

        Raises:
            BrokerUnavailable: the broker cannot take it now; nothing was sent.
        """

    async def publish_with_history(
        self,
        channel: str,
        head: bytes,
        stream: str,
        data: bytes,
        size: int,
        ttl: float,
        wait: bool = True,
    ) -> Position | None:
        """Append ``data`` to ``stream``'s history (``size``, ``ttl``: see
        ``HistoryStore.append``), and publish the open envelope ``head`` completed with
        the position to ``channel``, as one step: every node gets a stream's
        publications in offset order, and no crash can leave one appended and not sent
        unnoticed. This default suits a store in this process, whose append does not
        wait; a broker whose store is remote does both in one command.

        Args:
            wait: wait for the position (False: a remote store may return None at
                once, the publication queued in order; its loss, should the connection
                fail before it is written, is counted in ``health().dropped``).

        Raises:
            BrokerUnavailable: nothing was appended or published.
            RuntimeError: this broker keeps no history.
        """
        if self.history is None:
            raise RuntimeError(f"{type(self).__name__} keeps no history")
        position = await self.history.append(stream, data, size, ttl)
        await self.publish(channel, head + position_fields(position.offset, position.epoch))
        return position

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Receive ``channel``'s messages from now on (kept across reconnections)."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``'s messages."""

    @abc.abstractmethod
    def presence_add(self, key: str, member: str) -> None:
        """Record ``member`` under ``key`` for this node (kept across reconnections).

        Returns at once; the write happens in the background, in order with this
        node's other writes, and before this node's next presence read.
        """

    @abc.abstractmethod
    def presence_remove(self, key: str, member: str) -> None:
        """Withdraw ``member`` from ``key`` for this node (like ``presence_add``)."""

    @abc.abstractmethod
    async def presence(self, key: str) -> dict[str, str]:
        """Every live member under ``key``, across nodes: member id -> node id.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """

    @abc.abstractmethod
    async def presence_of(self, key: str, member: str) -> str | None:
        """The node that has ``member`` under ``key``, if it is live; else None.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        """Which of ``nodes`` are live now (their presence has not expired), in one cheap
        read: a node's members can be dropped everywhere as soon as it is dead, without
        reading every key. A broker that cannot tell answers that every node is live
        (the members of a dead one then go as the keys are read).

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """
        return set(nodes)

    @abc.abstractmethod
    def health(self) -> BrokerHealth:
        """The broker's state now."""
