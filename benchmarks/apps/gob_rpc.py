"""The message layer: JSON-RPC calls and channels through gobstopper's ``RPC``.

``add(a, b)`` answers a sum; ``publish(data)`` publishes ``data`` to the channel
``news.sport`` and answers the subscribers reached, whom clients subscribe with
``rpc.subscribe`` (to ``news.sport`` or to a pattern such as ``news.*``). The client
picks msgpack with ``?encoding=msgpack``.

Run it with ``granian --interface rsgi benchmarks.apps.gob_rpc:app``.
"""

from __future__ import annotations

from gobstopper import RPC, Gobstopper, WebSocket

__all__ = ["CHANNEL", "app", "rpc"]

CHANNEL = "news.sport"

app = Gobstopper()
rpc = RPC(app.manager)


@rpc.method()
async def add(a: int, b: int) -> int:
    return a + b


@rpc.method()
async def publish(data: str) -> int:
    return int(await rpc.publish(CHANNEL, data))


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
