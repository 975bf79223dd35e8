"""The app the room-manager integration tests run under real servers."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from gobstopper import Connection, Gobstopper, WebSocket
from tests.apps import rss_bytes

app = Gobstopper()
manager = app.manager
kept: list[Connection] = []


@app.websocket("/ws/room/<room>")
async def member(ws: WebSocket, room: str) -> None:
    """A member: joins ``room`` and obeys JSON commands, one per message."""
    await ws.accept()
    conn_id = ws.query_params.get("id")
    ws.state.role = ws.query_params.get("role", "user")
    async with manager.connect(ws, conn_id) as conn:
        if ws.query_params.get("keep"):
            kept.append(conn)  # a reference that outlives the connection
        await conn.join(room)
        await conn.send({"joined": room, "id": conn.id})
        async for message in ws:
            cmd: dict[str, Any] = message.json()
            op = cmd["op"]
            if op == "room":
                exclude = conn if cmd.get("exclude_self") else None
                n = await manager.broadcast(cmd["data"], room=cmd["room"], exclude=exclude)
            elif op == "all":
                n = await manager.broadcast(cmd["data"])
            elif op == "to":
                n = int(await manager.send_to(cmd["id"], cmd["data"]))
            elif op == "admins":
                n = await manager.broadcast(
                    cmd["data"], predicate=lambda c: c.state.role == "admin"
                )
            elif op == "join":
                await conn.join(cmd["room"])
                n = 0
            elif op == "leave":
                await conn.leave(cmd["room"])
                n = 0
            elif op == "blast":
                n = await blast(
                    cmd["room"], cmd["count"], cmd.get("size", 0), cmd.get("interval", 0)
                )
            else:
                n = -1
            await conn.send({"done": op, "n": n})


async def blast(room: str, count: int, size: int, interval: float = 0) -> int:
    """Broadcast ``count`` numbered messages to ``room``, ``interval`` seconds apart."""
    padding = "p" * size
    total = 0
    for i in range(count):
        total += await manager.broadcast(f"{i}:{padding}", room=room)
        # Yield to the loop after each one, as a handler that reads its input does:
        # the server then sees sends complete, and the queues hold only the lag.
        await asyncio.sleep(interval)
    return total


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return {
        "connections": len(manager),
        "rooms": {room: sorted(manager.members(room)) for room in manager.rooms()},
        "queued_bytes": manager.queued_bytes,
        "queued_messages": manager.queued_messages,
        "dropped": manager.stats.dropped,
        "slow_closed": manager.stats.slow_closed,
        "peak_queued_bytes": manager.stats.peak_queued_bytes,
        "queue_limit_bytes": manager.config.send_queue_bytes,
        "open_websockets": len(app.connections),
        "tasks": len(asyncio.all_tasks()),
        "rss_bytes": rss_bytes(),
        "objects": len(gc.get_objects()),
        "limiter": app.limiter.total,
        "metrics_open": app.metrics.open_connections,
    }
