"""Echo with Starlette, a peer for the echo benchmark: run it on uvicorn.

uvicorn --loop uvloop --ws websockets-sansio benchmarks.apps.starlette_echo:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                await ws.send_text(text)
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws/echo", echo)])
