"""A test app with the production defences on; limits come from the environment.

- ``/ws/echo``: echoes text.
- ``/ws/private?token=s3cret``: the app-wide auth hook checks the token and sets the
  user; the handler greets the user, then echoes.
- ``/ws/admin``: a route hook that wants the header ``x-role: admin``.
- ``/stats``: the app's counters as JSON; ``/metrics``: the same for Prometheus.
"""

from __future__ import annotations

from gobstopper import Gobstopper, HTTPError, WebSocket
from tests.apps import rss_bytes

app = Gobstopper(metrics_path="/metrics")


@app.auth
async def token(ws: WebSocket) -> None:
    if ws.path == "/ws/private":
        if ws.query_params.get("token") != "s3cret":
            raise HTTPError(401, "a valid token is required")
        ws.state.user = "alice"


@app.websocket("/ws/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        await ws.send_text(message.text)


@app.websocket("/ws/private")
async def private(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(f"hello {ws.state.user}")
    async for message in ws:
        await ws.send_text(message.text)


@app.websocket("/ws/admin", auth=lambda ws: ws.headers.get("x-role") == "admin")
async def admin(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("admin")
    await ws.wait_closed()


@app.websocket("/ws/deaf")
async def deaf(ws: WebSocket) -> None:
    """Accepts and never reads: what a client sends piles up only to the bound."""
    await ws.accept()
    await ws.wait_closed()


@app.get("/stats")
async def stats() -> dict[str, object]:
    return {**app.metrics.snapshot(), "limiter_total": app.limiter.total, "rss_bytes": rss_bytes()}
