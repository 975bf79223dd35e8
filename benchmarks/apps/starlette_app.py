"""Starlette, a peer for the echo and fan-out benchmarks: run it on uvicorn.

uvicorn --loop uvloop --ws websockets-sansio benchmarks.apps.starlette_app:app

``/ws/echo`` sends each message back. ``/ws/recv`` joins one room (a set) and
``/ws/send`` broadcasts each message it gets to the room, the way Starlette and FastAPI
users write it: a loop that awaits each member's send in turn.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

room: set[WebSocket] = set()


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


async def receiver(ws: WebSocket) -> None:
    await ws.accept()
    room.add(ws)
    try:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        room.discard(ws)


async def sender(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text") or ""
        for member in tuple(room):
            try:
                await member.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                room.discard(member)  # it has gone; its receiver's loop ends too


app = Starlette(
    routes=[
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/recv", receiver),
        WebSocketRoute("/ws/send", sender),
    ]
)
