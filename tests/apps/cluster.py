"""A test app for rooms across processes: run several with GOBSTOPPER_BROKER_URL=redis://...

Each client joins ``/ws/room/<room>?id=<id>``, gets ``{"joined": id}``, then sends
commands as JSON:

- ``{"op": "broadcast", "data": ..., "exclude_me": bool, "room": bool}``: to the room (or
  to everyone with ``"room": false``); answered ``{"ack": n, "published": bool, "error": ...}``
  only when ``"ack": true`` is in the command.
- ``{"op": "send_to", "id": ..., "data": ...}``: answered ``{"sent": bool}`` or
  ``{"unavailable": reason}``.
"""

from __future__ import annotations

import os

from gobstopper import BrokerUnavailable, Gobstopper, WebSocket

app = Gobstopper()


@app.websocket("/ws/room/<room>")
async def room(ws: WebSocket, room: str) -> None:
    await ws.accept()
    async with app.manager.connect(ws, id=ws.query_params.get("id")) as conn:
        await conn.join(room)
        await ws.send_json({"joined": conn.id, "pid": os.getpid()})
        async for command in ws.iter_json():
            op = command.get("op")
            if op == "broadcast":
                delivery = await app.manager.broadcast(
                    command["data"],
                    room=room if command.get("room", True) else None,
                    exclude=conn if command.get("exclude_me") else None,
                )
                if command.get("ack"):
                    await conn.send(
                        {
                            "ack": int(delivery),
                            "published": delivery.published,
                            "error": delivery.error,
                        }
                    )
            elif op == "send_to":
                try:
                    sent = await app.manager.send_to(command["id"], command["data"])
                except BrokerUnavailable as exc:
                    await conn.send({"unavailable": str(exc)})
                else:
                    await conn.send({"sent": sent})


@app.get("/presence/<room>")
async def presence(room: str) -> dict[str, object]:
    members = await app.manager.cluster_members(room)
    return {"count": len(members), "members": members, "local": app.manager.count(room)}


@app.get("/health")
async def health() -> dict[str, object]:
    state = app.manager.broker_health()
    return {"pid": os.getpid(), "broker": None if state is None else state.as_dict()}
