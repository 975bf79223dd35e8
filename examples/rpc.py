"""JSON-RPC 2.0 over a WebSocket: methods, a stream, named events and channels.

Run:  granian --interface rsgi examples.rpc:app
Try:  python -m websockets ws://127.0.0.1:8000/rpc
      > {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
      < {"jsonrpc":"2.0","result":5,"id":1}
      > {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["news.*"], "id": 2}
      > {"jsonrpc": "2.0", "method": "announce", "params": ["news.sport", "goal"], "id": 3}
      < {"jsonrpc":"2.0","method":"rpc.message","params":{"channel":"news.sport","data":"goal"}}
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gobstopper import RPC, Event, Gobstopper, RPCError, State, WebSocket, serve_client_js

app = Gobstopper()


def may_publish(state: State, channel: str) -> bool:
    """Clients may publish to chat channels only; the server publishes anywhere."""
    return channel.startswith("chat.")


rpc = RPC(app.manager, client_publish=may_publish)
serve_client_js(app)  # the browser client, at /gobstopper.js


@rpc.method()
async def add(a: float, b: float) -> float:
    return a + b


@rpc.method()
async def divide(a: float, b: float) -> float:
    if b == 0:
        raise RPCError(4000, "division by zero", {"a": a})
    return a / b


@rpc.method()
async def whoami(ws: WebSocket) -> str:
    """A parameter named ``ws`` gets the caller's connection."""
    return ws.client.host if ws.client is not None else "unknown"


@rpc.method()
async def count(n: int, delay: float = 0.0) -> AsyncIterator[int]:
    """A stream: items 0..n-1, then the answer (n). ``rpc.cancel`` stops it."""
    for i in range(n):
        yield i
        if delay:
            await asyncio.sleep(delay)


@rpc.method()
async def announce(channel: str, data: str) -> int:
    """Publish to a channel from the server (any name): returns the local subscribers reached."""
    return int(await rpc.publish(channel, data))


@rpc.on("sum_event")
async def on_sum(event: Event, numbers: list[float]) -> None:
    await event.reply("sum_result", sum(numbers))


@rpc.on("join")
async def on_join(event: Event, room: str) -> list[str]:
    await event.conn.join(room)
    await event.to_others("joined", {"id": event.sender}, room=room)
    return app.manager.members(room)


@rpc.on("say")
async def on_say(event: Event, params: dict[str, str]) -> None:
    """``{"room": ..., "text": ...}`` to everyone in the room, the sender included."""
    await event.to_room(params["room"], "said", {"id": event.sender, "text": params["text"]})


@rpc.on("whisper")
async def on_whisper(event: Event, params: dict[str, str]) -> None:
    """``{"to": <connection id>, "text": ...}`` to one connection, wherever it is."""
    await event.to(params["to"], "whispered", {"id": event.sender, "text": params["text"]})


@rpc.on("shout")
async def on_shout(event: Event, text: str) -> None:
    await event.to_all("shouted", {"id": event.sender, "text": text})


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
