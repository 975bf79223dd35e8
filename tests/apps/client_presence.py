"""Presence with users and expiring JSON Web Tokens, for the Python client's integration
tests: every connection to ``/rpc`` shows a JWT (``sub`` its user, ``name`` its meta),
and the channels ``room.*`` track presence."""

from __future__ import annotations

from gobstopper import RPC, Gobstopper, WebSocket, jwt_auth

SECRET = "a-secret-for-tests-only-32-bytes!"

app = Gobstopper()
rpc = RPC(app.manager)
rpc.track_presence("room.*")
auth = jwt_auth(SECRET, meta=lambda claims: {"name": claims.get("name", "")})


@app.websocket("/rpc", auth=auth)
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
