"""Channels with history, for the integration tests: ``feed.*`` keeps 20,000
publications, ``small.*`` only 10; clients may publish to both."""

from __future__ import annotations

from gobstopper import RPC, Gobstopper, WebSocket

app = Gobstopper()
rpc = RPC(app.manager, client_publish=True)
rpc.keep_history("feed.*", size=20_000, ttl=600)
rpc.keep_history("small.*", size=10, ttl=600)


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
