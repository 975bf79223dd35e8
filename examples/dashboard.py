"""A live dashboard: the server pushes a price tick to every subscriber, 20 times a second.

Only the latest values matter, so a client that falls behind loses old ticks rather
than being disconnected: ``slow_consumer_policy="drop_oldest"``.

Run:  granian --interface rsgi examples.dashboard:app
Then: python -m websockets ws://127.0.0.1:8000/ws/prices
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from gobstopper import Gobstopper, WebSocket

app = Gobstopper(slow_consumer_policy="drop_oldest", send_queue_messages=64)
ticker: asyncio.Task[None] | None = None


async def publish_prices() -> None:
    seq = 0
    while True:
        seq += 1
        price = round(100 + 5 * math.sin(seq / 20), 2)
        # Encoded once, queued for every subscriber; never waits on any of them.
        await app.manager.broadcast({"seq": seq, "symbol": "GOB", "price": price}, room="prices")
        await asyncio.sleep(0.05)


@app.on_startup
async def start_ticker() -> None:
    global ticker
    ticker = asyncio.get_running_loop().create_task(publish_prices())


@app.on_shutdown
async def stop_ticker() -> None:
    if ticker is not None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


@app.websocket("/ws/prices")
async def prices(ws: WebSocket) -> None:
    async with app.manager.connect(ws) as conn:
        await conn.join("prices")
        await ws.wait_closed()  # this client only listens


@app.get("/health")
async def health() -> dict[str, object]:
    return {
        "subscribers": app.manager.count("prices"),
        "dropped": app.manager.stats.dropped,
    }
