"""The same JSON-RPC subset as ``gob_rpc``, written by hand on gobstopper's WebSocket layer.

What an application would write without the message layer: parse each request with
msgspec, answer ``add``, join one room on ``rpc.subscribe``, and on ``publish`` encode
the ``rpc.message`` notification once and ``broadcast()`` it to the room. No parameter
validation, no wildcard matching (every subscriber is in the one room), no batches.

Run it with ``granian --interface rsgi benchmarks.apps.gob_ws_rpc:app``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gobstopper import Gobstopper, WebSocket

from .raw_rpc import CHANNEL, answer, codec_for, notification

__all__ = ["app"]

app = Gobstopper()


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    decode, encode, binary = codec_for(ws.query_string)
    send: Any = ws.send_bytes if binary else ws.send_text
    async with app.manager.connect(ws) as conn:
        async for message in ws:
            try:
                request = decode(message.data)
            except msgspec.DecodeError:
                continue
            method = request.get("method")
            if method == "publish":
                sent = await app.manager.broadcast(notification(request["params"][0]), room=CHANNEL)
                reply = {"jsonrpc": "2.0", "result": int(sent), "id": request.get("id")}
            elif method == "rpc.subscribe":
                await conn.join(CHANNEL)
                result = {"channel": request["params"][0], "subscriptions": 1}
                reply = {"jsonrpc": "2.0", "result": result, "id": request.get("id")}
            else:
                reply = answer(request)
            await send(encode(reply))
