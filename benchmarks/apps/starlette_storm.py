"""The reconnect storm with Starlette: each client joins one room (a set), then stays.

The same exchange as ``gob_storm``: ``join``, then ``joined`` once in the room. Run it
with ``uvicorn --ws websockets-sansio benchmarks.apps.starlette_storm:app``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

room: set[WebSocket] = set()


async def storm(ws: WebSocket) -> None:
    await ws.accept()
    try:
        await ws.receive_text()  # "join"
        room.add(ws)
        await ws.send_text("joined")
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
    except WebSocketDisconnect:
        pass
    finally:
        room.discard(ws)


app = Starlette(routes=[WebSocketRoute("/ws/storm", storm)])
