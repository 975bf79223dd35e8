"""JSON-RPC 2.0 over a WebSocket: call methods, get results or standard errors.

Run:  granian --interface rsgi examples.rpc:app
Try:  python -m websockets ws://127.0.0.1:8000/rpc
      > {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}
      < {"jsonrpc":"2.0","result":5,"id":1}
"""

from __future__ import annotations

from gobstopper import RPC, Gobstopper, RPCError, WebSocket

app = Gobstopper()
rpc = RPC()


@rpc.method()
async def add(a: float, b: float) -> float:
    return a + b


@rpc.method()
async def divide(a: float, b: float) -> float:
    if b == 0:
        raise RPCError(4000, "division by zero", {"a": a})
    return a / b


@rpc.method()
async def whoami(ws: WebSocket) -> str:
    """A parameter named ``ws`` gets the caller's connection."""
    return ws.client.host if ws.client is not None else "unknown"


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    await rpc.serve(ws)
