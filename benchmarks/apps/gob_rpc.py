"""The message layer: JSON-RPC calls and channels through gobstopper's ``RPC``.

``add(a, b)`` answers a sum; ``publish(data)`` publishes ``data`` to the channel
``news.sport`` and answers the subscribers reached, whom clients subscribe with
``rpc.subscribe`` (to ``news.sport`` or to a pattern such as ``news.*``). The client
picks msgpack with ``?encoding=msgpack``.

With ``BENCH_HISTORY_SIZE`` set to a positive number, ``news.sport`` keeps history
(``rpc.keep_history``, that many publications, each for ``BENCH_HISTORY_TTL`` seconds,
600 by default), in the broker's store (``GOBSTOPPER_BROKER_URL``): every push then
carries its ``offset`` and ``epoch``.

Run it with ``granian --interface rsgi benchmarks.apps.gob_rpc:app``.
"""

from __future__ import annotations

import os

from gobstopper import RPC, Gobstopper, WebSocket

__all__ = ["CHANNEL", "HISTORY_SIZE", "HISTORY_TTL", "app", "rpc"]

CHANNEL = "news.sport"
HISTORY_SIZE = int(os.environ.get("BENCH_HISTORY_SIZE") or 0)
HISTORY_TTL = float(os.environ.get("BENCH_HISTORY_TTL") or 600)

app = Gobstopper()
rpc = RPC(app.manager)
if HISTORY_SIZE > 0:
    rpc.keep_history(CHANNEL, size=HISTORY_SIZE, ttl=HISTORY_TTL)


@rpc.method()
async def add(a: int, b: int) -> int:
    return a + b


@rpc.method()
async def publish(data: str) -> int:
    return int(await rpc.publish(CHANNEL, data))


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
