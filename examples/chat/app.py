"""Chat rooms on the message layer (JSON-RPC, see docs/protocol.md) and the browser
client (/gobstopper.js), with user-keyed presence: every page sees who is in its room and
on how many devices, and gets a notice when a user comes or goes (not when one of their
tabs does), across workers with the Redis broker; typing notices and messages too.

Run:  granian --interface rsgi examples.chat:app
Open: http://127.0.0.1:8000/ (several tabs, same room; one name in two tabs is one user on
two devices); the page reconnects by itself.

Across two workers (or hosts), through Redis (pip install -e '.[redis]'):
      GOBSTOPPER_BROKER_URL=redis://127.0.0.1:6379/0 \\
      granian --interface rsgi --workers 2 --respawn-failed-workers examples.chat:app

Protocol, on ws://host/ws/chat?name=<name>[&device=<device>] (400 without a name):
  The connection belongs to the user <name>, with the presence meta {"name": <name>,
  "device": <device>} (without ?device=, a short form of the User-Agent: "Chrome on
  Linux").
  Rooms are the channels room.<room>, which track presence:
    rpc.subscribe {"channel": "room.<r>"} enters the room; its answer carries the room's
      presence: {"users": {user: [{"conn": id, "meta": {...}}]}, "connections": n, ...};
    rpc.presence_diff {"channel", "event": "join"|"update"|"leave", "user", "metas"}
      follows each change (a second tab of a user present is an "update");
    rpc.unsubscribe {"channel": "room.<r>"} leaves it.
    Only room.<r> channels, by name, may be subscribed to (-32001 otherwise).
  client -> server (events; sent as requests they are answered, errors included):
    say {"room": r, "text": t} -> null; the room's channel gets
      {"kind": "said", "name": n, "text": t}
    typing {"room": r}         -> null; the others in the room get
      {"kind": "typing", "name": n}
  Bad input: JSON-RPC errors (-32602 with the reason; 4001 when not in that room).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import msgspec

from gobstopper import (
    RPC,
    Event,
    Gobstopper,
    HTMLResponse,
    HTTPError,
    Identity,
    RPCError,
    State,
    WebSocket,
    serve_client_js,
)

NOT_IN_THE_ROOM = 4001

# A room's name is a channel segment (room.<room>): no dots, stars or spaces.
ROOM_PATTERN = r"^[^.*\s]{1,64}$"
_ROOM = re.compile(ROOM_PATTERN)
RoomName = Annotated[str, msgspec.Meta(pattern=ROOM_PATTERN)]

# What a User-Agent says, shortened: the first token found of each list.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS", "macOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str) -> str:
    """A short name for the device a User-Agent header describes ("Chrome on Linux");
    for a program, its first word ("Python")."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser is None:
        return user_agent.split("/", 1)[0].strip()[:32] or "unknown"
    return f"{browser} on {system}" if system else browser


def may_subscribe(state: State, channel: str) -> bool:
    """Rooms only, by name: a pattern would read every room without being in one."""
    kind, _, room = channel.partition(".")
    return kind == "room" and _ROOM.match(room) is not None


app = Gobstopper()
manager = app.manager
rpc = RPC(manager, name="chat", can_subscribe=may_subscribe)
rpc.track_presence("room.*")
serve_client_js(app)  # the browser client, at /gobstopper.js


def identify(ws: WebSocket) -> Identity:
    """Who connects: the user named by ``?name=``, on the device ``?device=`` (or the
    one its User-Agent names).

    Raises:
        HTTPError: 400 without a name (the handshake is refused).
    """
    name = ws.query_params.get("name", "").strip()[:32]
    if not name:
        raise HTTPError(400, "a name is required")
    device = ws.query_params.get("device", "").strip()[:32]
    device = device or device_name(ws.headers.get("user-agent") or "")
    return Identity(name, {"name": name, "device": device})


class Say(msgspec.Struct, forbid_unknown_fields=True):
    room: RoomName
    text: Annotated[str, msgspec.Meta(min_length=1)]


class Typing(msgspec.Struct, forbid_unknown_fields=True):
    room: RoomName


def _channel(event: Event, room: str) -> str:
    """The room's channel, if the sender is in the room (subscribed to it)."""
    channel = f"room.{room}"
    if channel not in rpc.subscriptions(event.conn.id):
        raise RPCError(NOT_IN_THE_ROOM, "join the room first", room)
    return channel


@rpc.on("say")
async def say(event: Event, params: Say) -> None:
    channel = _channel(event, params.room)
    said = {"kind": "said", "name": event.conn.user, "text": params.text[:2000]}
    await rpc.publish(channel, said)


@rpc.on("typing")
async def typing(event: Event, params: Typing) -> None:
    channel = _channel(event, params.room)
    notice = {"kind": "typing", "name": event.conn.user}
    await rpc.publish(channel, notice, exclude=event.conn.id)


@app.websocket("/ws/chat", auth=identify)
async def chat(ws: WebSocket) -> None:
    await rpc.serve(ws)  # as the user (and meta) identify() gave


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
