"""Connections that live on short-lived tokens, for the browser test of credentials:
``GET /token?user=<u>`` issues a token valid ``TOKEN_TTL`` seconds (2 by default); the
``/rpc`` endpoint takes it as its credential (``?token=`` or a refresh) and the page at
``/`` connects with ``credentials`` fetching a new one each time."""

from __future__ import annotations

import os
import secrets
import time

from gobstopper import (
    RPC,
    Connection,
    Gobstopper,
    HTMLResponse,
    HTTPError,
    Identity,
    PlainTextResponse,
    Request,
    WebSocket,
    credential,
    serve_client_js,
)

app = Gobstopper()
rpc = RPC(app.manager)
serve_client_js(app)
TTL = float(os.environ.get("TOKEN_TTL", "2"))
_tokens: dict[str, tuple[str, float]] = {}  # token -> user, expires_at


@app.get("/token")
async def token(request: Request) -> PlainTextResponse:
    value = secrets.token_urlsafe(12)
    _tokens[value] = (request.query_params.get("user") or "ann", time.time() + TTL)
    return PlainTextResponse(value)


def check(ws: WebSocket) -> Identity:
    """The user of a token not expired yet (when connecting, and on each refresh)."""
    user, expires_at = _tokens.get(credential(ws) or "", ("", 0.0))
    if expires_at <= time.time():
        raise HTTPError(401, "unknown or expired token")
    return Identity(user, expires_at=expires_at)


@rpc.method()
async def whoami(conn: Connection) -> str | None:
    return conn.user


@app.websocket("/rpc", auth=check)
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)


PAGE = """<!doctype html>
<title>tokens</title>
<script src="/gobstopper.js"></script>
<script>
"use strict";
// fetched: the tokens fetched (one per connection, one per refresh); bad: the next
// credential is one the server does not know.
window.fetched = 0;
window.bad = false;
window.errors = [];
window.closes = [];
const client = new Gobstopper.Client("/rpc", {
  backoff: 100,
  maxBackoff: 500,
  credentials: async () => {
    if (bad) {
      bad = false;
      return "not-a-token";
    }
    fetched += 1;
    return (await fetch("/token?user=ann")).text();
  },
});
client.onerror = (err, stage) => errors.push([stage, err.code ?? null]);
client.onclose = ({closeReason}) => closes.push(closeReason);
client.connect();
</script>
"""


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)
