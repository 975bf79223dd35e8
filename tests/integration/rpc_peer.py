"""A plain ``websockets`` client speaking JSON-RPC by hand, as a browser page or another
language's client would: what the server puts on the wire is what the tests see."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .helpers import WAIT, recv_json
from .servers import Server


class RpcPeer:
    """Requests numbered 1, 2, ...; each answer must be the next one to arrive (pushes
    aside): an answer out of turn fails the test. Pushes (notifications) read while
    waiting for an answer are kept, in order, until a test asks for them."""

    def __init__(self, ws: ClientConnection, timeout: float = WAIT) -> None:
        self.ws = ws
        self.timeout = timeout
        self.ids = 0
        self.pushes: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, timeout: float = WAIT) -> RpcPeer:
        return cls(await connect(url), timeout)

    async def send(self, obj: Any) -> None:
        """Send ``obj`` as JSON text, or as is when it is already a str or bytes."""
        await self.ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    async def recv(self) -> Any:
        """The next message, whatever it is."""
        return await recv_json(self.ws, self.timeout)

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request; return its whole answer (result or error)."""
        self.ids += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self.ids}
        if params is not None:
            request["params"] = params
        await self.send(request)
        return await self.answer(self.ids)

    async def result(self, method: str, params: Any = None) -> Any:
        """Send a request that must succeed; return its result."""
        answer = await self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]

    async def answer(self, rid: Any) -> dict[str, Any]:
        """The next answer, which must be for ``rid``; ``None`` also stands for a
        batch's answers (a list) and for errors about requests without a usable id."""
        while True:
            message = await self.recv()
            if isinstance(message, dict) and "id" not in message:
                self.pushes.append(message)
                continue
            if isinstance(message, list):  # a batch's answers: asked for with rid None
                assert rid is None, message
                return message  # type: ignore[return-value]
            assert message.get("id") == rid, message
            return message  # type: ignore[no-any-return]

    async def push(self, method: str | None = None, event: str | None = None) -> dict[str, Any]:
        """The params of the next push of ``method`` (any, by default; of that ``event``,
        for ``rpc.event``); pushes read earlier count first."""

        def wanted(message: dict[str, Any]) -> bool:
            if method is not None and message.get("method") != method:
                return False
            return event is None or message["params"].get("event") == event

        for i, message in enumerate(self.pushes):
            if wanted(message):
                return self.pushes.pop(i)["params"]  # type: ignore[no-any-return]
        while True:
            message = await self.recv()
            assert isinstance(message, dict) and "id" not in message, message  # no answer due
            if wanted(message):
                return message["params"]  # type: ignore[no-any-return]
            self.pushes.append(message)

    def forget(self, event: str) -> None:
        """Drop the ``event`` pushes read so far (those that may or may not come)."""
        self.pushes = [m for m in self.pushes if m["params"].get("event") != event]

    async def nothing_more(self) -> None:
        """Nothing else is on its way: a round trip comes back with no push before it."""
        await self.result("rpc.info")
        assert self.pushes == [], self.pushes


@asynccontextmanager
async def rpc_peers(
    server: Server, n: int, path: str = "/rpc", query: str = ""
) -> AsyncIterator[list[RpcPeer]]:
    """``n`` peers connected to ``path`` of ``server``, closed on the way out."""
    async with AsyncExitStack() as stack:
        peers = [
            RpcPeer(await stack.enter_async_context(connect(f"{server.ws}{path}{query}")))
            for _ in range(n)
        ]
        yield peers
