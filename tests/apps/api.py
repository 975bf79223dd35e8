"""The HTTP API's test app: run it with ``GOBSTOPPER_API_KEY`` set (and a broker URL for
several workers).

- ``/rpc?id=<id>&user=<user>``: the message layer (endpoint ``rpc``), with ``join(room)``
  and ``node()`` (the id of the node, i.e. worker, that serves the connection). Channels
  ``kept.*`` keep their last 100 publications.
- ``/ws/<room>?id=<id>``: a plain WebSocket in ``room``: it gets ``joined`` once in it,
  then the raw frames sent to it.
"""

from __future__ import annotations

from gobstopper import RPC, Connection, Gobstopper, WebSocket

app = Gobstopper()
rpc = RPC(app.manager)
rpc.keep_history("kept.*", size=100, ttl=600)


@rpc.method()
async def join(room: str, conn: Connection) -> None:
    await conn.join(room)


@rpc.method()
async def node() -> str:
    return app.manager.cluster.node


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws, id=ws.query_params.get("id"), user=ws.query_params.get("user"))


@app.websocket("/ws/<room>")
async def plain(ws: WebSocket, room: str) -> None:
    async with app.manager.connect(ws, id=ws.query_params.get("id")) as conn:
        await conn.join(room)
        await conn.send("joined")  # the client knows from then on that it is in the room
        async for _ in ws:
            pass  # it only listens
