"""Expiring credentials, for the integration tests: JWT-authenticated routes, one served
by the message layer and one plain handler that refreshes through ``auth.refresh``."""

from __future__ import annotations

import time
from typing import Any

import jwt

from gobstopper import RPC, Connection, Gobstopper, WebSocket, jwt_auth
from gobstopper.auth import RefreshRefused, refresh

#: The HMAC secret the tests sign their tokens with.
SECRET = "a test secret, long enough for HS256 (32 bytes)"

app = Gobstopper()
rpc = RPC(app.manager)
auth = jwt_auth(SECRET, meta=lambda claims: {"name": claims["name"]} if "name" in claims else {})


def token(user: str, lifetime: float, **claims: Any) -> str:
    """A token for ``user`` that expires ``lifetime`` seconds from now."""
    return jwt.encode({"sub": user, "exp": time.time() + lifetime, **claims}, SECRET)


@rpc.method()
async def whoami(conn: Connection, ws: WebSocket) -> dict[str, Any]:
    identity = ws.identity
    return {
        "user": conn.user,
        "meta": dict(conn.meta),
        "expires_at": identity.expires_at if identity is not None else None,
    }


@app.websocket("/rpc", auth=auth)
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)


@app.websocket("/plain", auth=auth)
async def plain(ws: WebSocket) -> None:
    """Echoes; ``refresh <token>`` presents a new credential (answered ``refreshed <exp>``)."""
    await ws.accept()
    async for message in ws:
        command, _, argument = message.text.partition(" ")
        if command != "refresh":
            await ws.send_text(message.text)
            continue
        try:
            identity = await refresh(ws, argument)
        except RefreshRefused as exc:
            await ws.close(exc.code, exc.reason)
            return
        await ws.send_text(f"refreshed {identity.expires_at}")
