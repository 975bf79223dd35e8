"""Chat rooms: the room comes from the path; members get join/leave notices with the
member list (across workers with the Redis broker), typing notices, and messages.

Run:  granian --interface rsgi examples.chat:app
Open: http://127.0.0.1:8000/ (two tabs, same room); the page reconnects by itself.

Across two workers (or hosts), through Redis (pip install 'gobstopper[redis]'):
      GOBSTOPPER_BROKER_URL=redis://127.0.0.1:6379/0 \
      granian --interface rsgi --workers 2 examples.chat:app

Wire format (JSON text messages):
  client -> server: {"text": "..."} or {"typing": true}
  server -> client: {"type": "message", "from": name, "text": "..."}
                    {"type": "join" | "leave", "name": name, "members": [names]}
                    {"type": "typing", "name": name} (to the others in the room)
                    {"type": "error", "error": "..."} (to the sender of a bad message)
"""

from __future__ import annotations

import uuid
from pathlib import Path

from gobstopper import BrokerUnavailable, Gobstopper, HTMLResponse, WebSocket

app = Gobstopper()
manager = app.manager


async def _names(room: str) -> list[str]:
    """Everyone in the room, on every worker: a connection's id is ``name#random``."""
    try:
        ids = await manager.cluster_members(room)
    except BrokerUnavailable:
        ids = manager.members(room)  # Redis is away: this worker's members only
    return sorted(conn_id.rsplit("#", 1)[0] for conn_id in ids)


@app.websocket("/ws/chat/<room>")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "").strip()[:32]
    if not name:
        await ws.close(400)  # refuse the handshake: a name is required
        return
    ws.state.name = name
    async with manager.connect(ws, id=f"{name}#{uuid.uuid4().hex[:8]}") as conn:
        await conn.join(room)
        members = await _names(room)
        await manager.broadcast({"type": "join", "name": name, "members": members}, room=room)
        try:
            async for message in ws:
                try:
                    data = message.json()
                except ValueError as exc:  # garbage gets an answer, not a closed socket
                    await conn.send({"type": "error", "error": f"not JSON: {exc}"[:200]})
                    continue
                if isinstance(data, dict) and data.get("typing") is True:
                    await manager.broadcast(
                        {"type": "typing", "name": name}, room=room, exclude=conn
                    )
                    continue
                text = data.get("text") if isinstance(data, dict) else None
                if not isinstance(text, str) or not text:
                    await conn.send({"type": "error", "error": 'expected {"text": "..."}'})
                    continue
                await manager.broadcast(
                    {"type": "message", "from": name, "text": text[:2000]}, room=room
                )
        finally:
            await conn.leave(room)
            members = await _names(room)
            await manager.broadcast({"type": "leave", "name": name, "members": members}, room=room)


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
