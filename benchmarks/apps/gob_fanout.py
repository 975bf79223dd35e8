"""Fan-out with gobstopper: the same room and broadcast as ``raw_fanout``, through the manager.

Run it with ``granian --interface rsgi benchmarks.apps.gob_fanout:app`` (or
``--interface asgi``).
"""

from __future__ import annotations

from gobstopper import Gobstopper, WebSocket

__all__ = ["app"]

ROOM = "room"

app = Gobstopper()


@app.websocket("/ws/recv")
async def receiver(ws: WebSocket) -> None:
    await ws.accept()
    async with app.manager.connect(ws) as conn:
        await conn.join(ROOM)
        await ws.wait_closed()


@app.websocket("/ws/send")
async def sender(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        await app.manager.broadcast(message.data, room=ROOM)
