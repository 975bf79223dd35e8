"""An app for the emitter's tests: the message layer at ``/rpc``, a method to join a room,
and ``kept.*`` channels with history."""

from __future__ import annotations

from gobstopper import RPC, Connection, Gobstopper, WebSocket

app = Gobstopper()
rpc = RPC(app.manager)
rpc.keep_history("kept.*", size=100, ttl=600)


@rpc.method()
async def join(room: str, conn: Connection) -> str:
    await conn.join(room)
    return conn.id


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    # ?user=<name>: the connection belongs to that user (an auth hook would decide).
    await rpc.serve(ws, user=ws.query_params.get("user"))
