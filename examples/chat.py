"""Chat rooms: the room comes from the path, members get join/leave notices.

Run:  granian --interface rsgi examples.chat:app
Open: http://127.0.0.1:8000/ (two tabs, same room)

Wire format (JSON text messages):
  client -> server: {"text": "..."}
  server -> client: {"type": "message", "from": name, "text": "..."}
                    {"type": "join" | "leave", "name": name, "members": [names]}
"""

from __future__ import annotations

from gobstopper import Gobstopper, HTMLResponse, WebSocket

app = Gobstopper()
manager = app.manager


def _names(room: str) -> list[str]:
    members = (manager.get(conn_id) for conn_id in manager.members(room))
    return sorted(c.state.name for c in members if c is not None)


@app.websocket("/ws/chat/<room>")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "").strip()[:32]
    if not name:
        await ws.close(400)  # refuse the handshake: a name is required
        return
    ws.state.name = name
    async with manager.connect(ws) as conn:
        await conn.join(room)
        await manager.broadcast({"type": "join", "name": name, "members": _names(room)}, room=room)
        try:
            async for message in ws.iter_json():
                text = str(message.get("text", ""))[:2000] if isinstance(message, dict) else ""
                if text:
                    await manager.broadcast(
                        {"type": "message", "from": name, "text": text}, room=room
                    )
        finally:
            await conn.leave(room)
            await manager.broadcast(
                {"type": "leave", "name": name, "members": _names(room)}, room=room
            )


@app.get("/health")
async def health() -> dict[str, object]:
    return {"status": "ok", "connections": len(manager), "rooms": manager.rooms()}


PAGE = """<!doctype html>
<meta charset="utf-8"><title>gobstopper chat</title>
<style>
  body { font: 15px system-ui; margin: 2em }
  #log { height: 20em; overflow: auto; border: 1px solid #ccc; padding: .5em }
</style>
<p><input id="room" value="lobby"> <input id="name" placeholder="your name">
   <button id="join">join</button></p>
<div id="log"></div><p id="members"></p>
<p><input id="text" size="50" placeholder="message"> <button id="send">send</button></p>
<script>
let ws = null;
const $ = (id) => document.getElementById(id);
const log = (line) => {
  const p = document.createElement("div");
  p.textContent = line;
  $("log").append(p);
};
$("join").onclick = () => {
  if (ws) ws.close();
  const room = encodeURIComponent($("room").value);
  const name = encodeURIComponent($("name").value);
  ws = new WebSocket(`ws://${location.host}/ws/chat/${room}?name=${name}`);
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "message") { log(`${m.from}: ${m.text}`); return; }
    log(`* ${m.name} ${m.type === "join" ? "joined" : "left"}`);
    $("members").textContent = "online: " + m.members.join(", ");
  };
  ws.onclose = (event) => log(`* disconnected (${event.code})`);
};
$("send").onclick = () => {
  if (ws) ws.send(JSON.stringify({text: $("text").value}));
  $("text").value = "";
};
</script>
"""


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)
