"""Chat rooms on the message layer (JSON-RPC, see docs/protocol.md) and the browser
client (/gobstopper.js): members get join/leave notices with the member list (across
workers with the Redis broker), typing notices and messages; every page sees how many
people are in each room through the ``rooms.*`` channels.

Run:  granian --interface rsgi examples.chat:app
Open: http://127.0.0.1:8000/ (two tabs, same room); the page reconnects by itself.

Across two workers (or hosts), through Redis (pip install 'gobstopper[redis]'):
      GOBSTOPPER_BROKER_URL=redis://127.0.0.1:6379/0 \
      granian --interface rsgi --workers 2 examples.chat:app

Protocol, on ws://host/ws/chat?name=<name> (the name is required: 400 without it):
  client -> server (events; sent as requests they are answered, errors included):
    join {"room": r}   -> {"room": r, "members": [names]}; leaves the previous room
    say {"text": t}    -> null; the room gets "said"
    typing             -> null; the others in the room get "typing"
    leave              -> null
  server -> client (rpc.event):
    joined / left {"name": n, "room": r, "members": [names]}   (to the room)
    said {"name": n, "text": t}                                (to the room)
    typing {"name": n}                                         (to the others)
  channel rooms.<room> (rpc.message): {"room": r, "count": n} when its members change.
  Bad input: JSON-RPC errors (-32602 with the reason; 4001 when not in a room).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import msgspec

from gobstopper import (
    RPC,
    BrokerUnavailable,
    Event,
    Gobstopper,
    HTMLResponse,
    RPCError,
    WebSocket,
    serve_client_js,
)

app = Gobstopper()
manager = app.manager
rpc = RPC(manager, name="chat")
serve_client_js(app)  # the browser client, at /gobstopper.js

NOT_IN_A_ROOM = 4001

# A room's name is also a channel segment (rooms.<room>): no dots, stars or spaces.
RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^.*\s]+$")]


class Join(msgspec.Struct, forbid_unknown_fields=True):
    room: RoomName


class Say(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1)]


def _name(conn_id: str) -> str:
    """A connection's id is ``name#random``: the name travels with it to every worker."""
    return conn_id.rsplit("#", 1)[0]


async def _names(room: str) -> list[str]:
    """Everyone in the room, on every worker."""
    try:
        ids = await manager.cluster_members(room)
    except BrokerUnavailable:
        ids = manager.members(room)  # Redis is away: this worker's members only
    return sorted(_name(conn_id) for conn_id in ids)


async def _announce(event: str, name: str, room: str) -> None:
    """``joined`` or ``left`` to the room, and the room's new count on its channel."""
    members = await _names(room)
    await rpc.emit(event, {"name": name, "room": room, "members": members}, room=room)
    await rpc.publish(f"rooms.{room}", {"room": room, "count": len(members)})


async def _leave(event: Event) -> None:
    room = event.state.room
    if room is not None:
        event.state.room = None
        await event.conn.leave(room)
        await _announce("left", event.state.name, room)


@rpc.on("join")
async def join(event: Event, params: Join) -> dict[str, object]:
    if event.state.room == params.room:
        return {"room": params.room, "members": await _names(params.room)}
    await _leave(event)
    await event.conn.join(params.room)
    event.state.room = params.room
    await _announce("joined", event.state.name, params.room)
    return {"room": params.room, "members": await _names(params.room)}


@rpc.on("leave")
async def leave(event: Event) -> None:
    await _leave(event)


def _room(event: Event) -> str:
    room: str | None = event.state.room
    if room is None:
        raise RPCError(NOT_IN_A_ROOM, "join a room first")
    return room


@rpc.on("say")
async def say(event: Event, params: Say) -> None:
    room = _room(event)
    await event.to_room(room, "said", {"name": event.state.name, "text": params.text[:2000]})


@rpc.on("typing")
async def typing(event: Event) -> None:
    await event.to_others("typing", {"name": event.state.name}, room=_room(event))


@app.websocket("/ws/chat")
async def chat(ws: WebSocket) -> None:
    name = ws.query_params.get("name", "").strip()[:32]
    if not name:
        await ws.close(400)  # refuse the handshake: a name is required
        return
    ws.state.name = name
    ws.state.room = None
    try:
        await rpc.serve(ws, id=f"{name}#{uuid.uuid4().hex[:8]}")
    finally:
        # The connection has left its room by now: tell the others.
        if ws.state.room is not None:
            await _announce("left", name, ws.state.room)


@app.get("/health")
async def health() -> dict[str, object]:
    broker = manager.broker_health()
    return {
        "status": "ok" if broker is None or broker.connected else "degraded",
        "connections": len(manager),
        "rooms": manager.rooms(),
        "broker": None if broker is None else broker.as_dict(),
    }


# The page: plain HTML and JavaScript, no build step, nothing fetched from elsewhere.
PAGE = (Path(__file__).parent / "index.html").read_text(encoding="utf-8")


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)
