"""Presence for the integration tests: the user and meta come from the query
(``?name=ann&device=phone``), ``room.*`` tracks presence, and ``away`` changes a
connection's meta."""

from __future__ import annotations

from gobstopper import RPC, Connection, Gobstopper, HTTPError, Identity, WebSocket

app = Gobstopper()
rpc = RPC(app.manager)
rpc.track_presence("room.*")


@app.auth
def identify(ws: WebSocket) -> Identity | None:
    name = ws.query_params.get("name")
    if name is None:
        return None  # a connection without a user: counted, never listed
    if not name:
        raise HTTPError(401, "an empty name")
    return Identity(name, {"device": ws.query_params.get("device", "web")})


@rpc.method()
async def away(conn: Connection, away: bool) -> None:
    await conn.set_meta({**conn.meta, "away": away})


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
