"""The message layer's edge cases, for the integration tests: streams whose items cannot
go, a small task limit, a route that takes its connection id from the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gobstopper import RPC, Gobstopper, WebSocket

app = Gobstopper(max_message_bytes=64 * 1024)
rpc = RPC(
    app.manager,
    max_tasks=3,
    client_publish=True,
    can_subscribe=lambda state, pattern: not pattern.startswith("secret."),
)


@rpc.method(concurrent=True)
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@rpc.method()
async def bad_items() -> AsyncIterator[object]:
    yield 1
    yield object()  # cannot be encoded: the stream ends with an internal error
    yield 3


@rpc.method()
async def big_items(size: int) -> AsyncIterator[str]:
    yield "small"
    yield "x" * size


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws, id=ws.query_params.get("id"))
