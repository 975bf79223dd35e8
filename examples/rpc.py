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
from dataclasses import dataclass

from gobstopper import (
    RPC,
    Connection,
    Event,
    Gobstopper,
    RPCError,
    State,
    WebSocket,
    serve_client_js,
)
from gobstopper.messages import has

app = Gobstopper()


def may_publish(state: State, channel: str) -> bool:
    """Clients may publish to chat channels only; the server publishes anywhere."""
    return channel.startswith("chat.")


rpc = RPC(app.manager, client_publish=may_publish, title="gobstopper example", version="0.1.0")
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


@rpc.method(concurrent=True)
async def nap(seconds: float) -> float:
    """A slow call run beside the connection's others (answered when done); cancellable."""
    await asyncio.sleep(seconds)
    return seconds


@rpc.method()
async def announce(channel: str, data: str) -> int:
    """Publish to a channel from the server (any name): returns the local subscribers reached."""
    return int(await rpc.publish(channel, data))


@rpc.method()
async def subscribers(channel: str) -> list[str]:
    """Ids of the connections subscribed to ``channel`` (a name or pattern), on every node."""
    return await rpc.subscribers(channel)


@rpc.method()
async def login(name: str, ws: WebSocket) -> str:
    """Methods (and auth hooks) set connection state that guards read."""
    ws.state.user = name
    return name


@rpc.method(requires=has("user"))
async def secret(ws: WebSocket) -> str:
    """Answered -32001 (access denied) until the caller has logged in."""
    return f"for {ws.state.user} only"


@rpc.method(limit=3, period=60.0)
async def expensive() -> str:
    """Three calls a minute per connection; more are answered -32002."""
    return "done"


@rpc.method(limit=3, period=60.0, close_on_limit=True)
async def strict() -> str:
    """The same limit, but the fourth call also closes the connection (1008)."""
    return "done"


@dataclass
class Room:
    room: str


@dataclass
class Say:
    room: str
    text: str


@dataclass
class Whisper:
    to: str
    text: str


@dataclass
class Shout:
    text: str


@rpc.method()
async def announce_to_others(channel: str, data: str, conn: Connection) -> int:
    """Publish to every subscriber but the caller (``conn``: the caller's connection)."""
    return int(await rpc.publish(channel, data, exclude=conn))


@rpc.method()
async def announce_to_users(channel: str, data: str) -> int:
    """Publish to logged-in subscribers of this node only (a predicate cannot travel)."""
    delivery = await rpc.publish(
        channel, data, predicate=lambda c: hasattr(c.state, "user"), local=True
    )
    return int(delivery)


@rpc.on("sum_event")
async def on_sum(event: Event, numbers: list[float]) -> None:
    await event.reply("sum_result", sum(numbers))


@rpc.on("join")
async def on_join(event: Event, data: Room) -> list[str]:
    """``{"room": ...}``: join it; the others there hear of it; answers the members."""
    await event.conn.join(data.room)
    await event.to_others("joined", {"id": event.sender}, room=data.room)
    return sorted(app.manager.members(data.room))


@rpc.on("say")
async def on_say(event: Event, data: Say) -> None:
    """``{"room": ..., "text": ...}`` to everyone in the room, the sender included."""
    await event.to_room(data.room, "said", {"id": event.sender, "text": data.text})


@rpc.on("whisper")
async def on_whisper(event: Event, data: Whisper) -> bool:
    """``{"to": <connection id>, "text": ...}`` to one connection, on whichever node."""
    delivery = await event.to(data.to, "whispered", {"id": event.sender, "text": data.text})
    return bool(delivery) or delivery.published


@rpc.on("shout")
async def on_shout(event: Event, data: Shout) -> None:
    """``{"text": ...}`` to every connection, the sender included."""
    await event.to_all("shouted", {"id": event.sender, "text": data.text})


@rpc.on("broadcast", requires=has("user"))
async def on_broadcast(event: Event, data: Shout) -> None:
    """Logged-in connections only (-32001 otherwise): ``{"text": ...}`` to everyone."""
    await event.to_all("broadcast", {"user": event.state.user, "text": data.text})


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
