"""Short-lived JSON Web Tokens: a connection presents one, is asked to refresh it before
it expires, and is closed (4001) if it does not.

Run:  pip install -e '.[jwt,client]'   # from the checkout: PyJWT, and websockets for Try
      export EXAMPLE_JWT_SECRET=$(openssl rand -hex 32)
      granian --interface rsgi examples.auth:app
Try:  TOKEN=$(curl -s 'http://127.0.0.1:8000/token?user=ann')
      python -m websockets "ws://127.0.0.1:8000/rpc?token=$TOKEN"
      > {"jsonrpc": "2.0", "method": "hello", "id": 1}
      < {"jsonrpc":"2.0","result":"hello ann","id":1}
      ... 15 seconds later:
      < {"jsonrpc":"2.0","method":"rpc.refresh_due","params":{"expires_at":...,"in":15.0}}
      > {"jsonrpc": "2.0", "method": "rpc.refresh", "params": {"token": "<a new one>"}, "id": 2}

The Python client (``Client(url, credentials=get_token)``) and the browser client
(``new Client(url, {credentials: getToken})``) answer ``rpc.refresh_due`` themselves.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jwt

from gobstopper import RPC, Connection, Gobstopper, HTTPError, Request, WebSocket, jwt_auth

# Your identity provider signs the tokens; here the app does, with a shared secret. No
# default: a secret written in the source signs tokens anyone can forge.
SECRET = os.environ.get("EXAMPLE_JWT_SECRET", "")
if len(SECRET) < 32:
    raise RuntimeError("set EXAMPLE_JWT_SECRET (32 characters or more) to sign the tokens")
LIFETIME = float(os.environ.get("EXAMPLE_TOKEN_SECONDS", "30"))

app = Gobstopper()
rpc = RPC(app.manager)
auth = jwt_auth(SECRET, audience="example", meta=lambda claims: {"name": claims.get("name", "")})


@app.get("/token")
async def issue(request: Request) -> str:
    """A demo login: a token for ``?user=`` (a real app checks a password first)."""
    user = request.query_params.get("user")
    if not user:
        raise HTTPError(400, "?user= is required")
    now = time.time()
    claims: dict[str, Any] = {"sub": user, "name": user.title(), "aud": "example"}
    return jwt.encode({**claims, "iat": int(now), "exp": now + LIFETIME}, SECRET)


@rpc.method()
async def hello(conn: Connection) -> str:
    return f"hello {conn.user}"


@rpc.method()
async def me(conn: Connection, ws: WebSocket) -> dict[str, Any]:
    """Who the connection belongs to, what presence shows of it, and until when."""
    expires_at = ws.identity.expires_at if ws.identity is not None else None
    return {"user": conn.user, "meta": dict(conn.meta), "expires_at": expires_at}


@app.websocket("/rpc", auth=auth)
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
