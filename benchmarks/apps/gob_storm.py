"""The reconnect storm with gobstopper: each client joins one room, then stays.

A client connects to ``/ws/storm`` and sends ``join``; the server joins it to the room
and answers ``joined``. Run it with ``granian --interface rsgi
benchmarks.apps.gob_storm:app`` or ``uvicorn benchmarks.apps.gob_storm:app``.
"""

from __future__ import annotations

from gobstopper import Gobstopper, WebSocket

__all__ = ["app"]

ROOM = "storm"

app = Gobstopper()


@app.websocket("/ws/storm")
async def storm(ws: WebSocket) -> None:
    await ws.accept()
    async with app.manager.connect(ws) as conn:
        await ws.receive_text()  # "join"
        await conn.join(ROOM)
        await ws.send_text("joined")
        await ws.wait_closed()
