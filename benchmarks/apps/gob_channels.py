"""Channels across nodes: ``publish(data)`` to ``ticks.a``, and a count of what the broker
brought this node.

Clients subscribe with ``rpc.subscribe`` (to ``ticks.a``, or to anything else);
``publish(data)`` publishes ``data`` to ``ticks.a`` and answers the subscribers reached
on this node. ``GET /received`` answers the messages this node's broker has handed it
since it started (``total``, and ``by_channel``, named as the broker names them) and its
node id (``node``, as the broker knows it): what
crossing the broker cost this node, whether its subscribers wanted them or not.

Run it with ``GOBSTOPPER_BROKER_URL=... granian --interface rsgi
benchmarks.apps.gob_channels:app``, one server per node.
"""

from __future__ import annotations

import os
from collections import Counter

from gobstopper import RPC, Gobstopper, WebSocket
from gobstopper.brokers import broker_from_url
from gobstopper.brokers.base import MessageHandler

__all__ = ["CHANNEL", "app", "rpc"]

CHANNEL = "ticks.a"

received: Counter[str] = Counter()
broker = broker_from_url(os.environ.get("GOBSTOPPER_BROKER_URL") or "memory://")
_start = broker.start


async def _counting_start(handler: MessageHandler) -> None:
    """The broker's ``start``, with every message it hands the node counted first."""

    def count(channel: str, data: bytes) -> None:
        received[channel] += 1
        handler(channel, data)

    await _start(count)


broker.start = _counting_start  # type: ignore[method-assign]

app = Gobstopper(broker=broker)
rpc = RPC(app.manager)


@rpc.method()
async def publish(data: str) -> int:
    return int(await rpc.publish(CHANNEL, data))


@app.get("/received")
async def broker_received() -> dict[str, object]:
    node = app.manager.cluster.node
    return {"node": node, "total": sum(received.values()), "by_channel": dict(received)}


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
