"""Echo with gobstopper: each message on ``/ws/echo`` goes back as it came.

Run it with ``granian --interface rsgi benchmarks.apps.gob_echo:app`` (or
``--interface asgi``), or with ``uvicorn benchmarks.apps.gob_echo:app``.
"""

from __future__ import annotations

from gobstopper import Gobstopper, WebSocket

__all__ = ["app"]

app = Gobstopper()


@app.websocket("/ws/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        data = message.data
        if isinstance(data, str):
            await ws.send_text(data)
        elif data is not None:
            await ws.send_bytes(data)
