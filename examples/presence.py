"""Presence: who is in each chat room, as users with their connections (tabs).

Run:  granian --interface rsgi examples.presence:app
Try:  python -m websockets 'ws://127.0.0.1:8000/rpc?name=ann'
      > {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["chat.lobby"], "id": 1}
      < {"jsonrpc":"2.0","result":{"channel":"chat.lobby","subscriptions":1,"presence":...
      and in another terminal, the same with ?name=bob: the first one gets
      < {"jsonrpc":"2.0","method":"rpc.presence_diff","params":{"channel":"chat.lobby",
         "event":"join","user":"bob","metas":[{"conn":"...","meta":{"name":"bob"}}]}}
"""

from __future__ import annotations

from gobstopper import RPC, Gobstopper, HTTPError, Identity, WebSocket

app = Gobstopper()
rpc = RPC(app.manager)
rpc.track_presence("chat.*")  # every chat room pushes who comes and goes


@app.auth
def who(ws: WebSocket) -> Identity:
    """A stand-in for real authentication: the user is whoever ``?name=`` says."""
    name = ws.query_params.get("name")
    if not name:
        raise HTTPError(401, "say who you are: ?name=...")
    return Identity(name, {"name": name})


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
