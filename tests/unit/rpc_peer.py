"""An RPC endpoint served on the in-memory transport: send a frame, read what comes back.

``served(rpc)`` runs ``rpc.serve(ws)`` on a fake transport for the duration of a block,
so unit tests reach dispatch through the same path as a real connection (a ``Peer``,
its codec, its tasks and rate limits) without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from gobstopper import Config, WebSocket
from gobstopper.messages import RPC
from gobstopper.messages.codec import CODECS, Codec
from gobstopper.transport.base import BYTES, CLOSE, TEXT, ScopeInfo

from .fake_transport import FakeTransport

__all__ = ["ServedPeer", "served"]

_probes = itertools.count()


class RecordingTransport(FakeTransport):
    """A fake transport that wakes whoever waits for the next frame sent."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    async def send_text(self, data: str) -> None:
        await super().send_text(data)
        self.grew.set()

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        await super().send_bytes(data)
        self.grew.set()

    def start_send(self, data: str | bytes) -> Any:
        fut = super().start_send(data)
        self.grew.set()
        return fut

    async def close(self, code: int, reason: str) -> None:
        await super().close(code, reason)
        self.grew.set()


class ServedPeer:
    """The client's side of a connection served by an RPC endpoint."""

    def __init__(self, ws: WebSocket, transport: RecordingTransport, codec: Codec) -> None:
        self.ws = ws
        self.transport = transport
        self.codec = codec
        self._read = 0  # frames of transport.sent already returned

    def send(self, frame: str | bytes) -> None:
        """Send one frame to the server (text for str, binary for bytes)."""
        self.transport.push(TEXT if isinstance(frame, str) else BYTES, frame)

    def send_obj(self, obj: Any) -> None:
        """Send ``obj`` encoded with the connection's codec."""
        self.send(self.codec.encode(obj))

    async def frame(self, timeout: float = 2.0) -> Any:
        """The next frame the server sent (answers and pushes, in order), decoded.

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds, or the connection
                closed first.
        """

        async def wait() -> None:
            while len(self.transport.sent) <= self._read:
                if self.transport.closed is not None:
                    raise TimeoutError(f"closed {self.transport.closed} before a frame came")
                self.transport.grew.clear()
                await self.transport.grew.wait()

        await asyncio.wait_for(wait(), timeout)
        raw = self.transport.sent[self._read]
        self._read += 1
        return self.codec.decode(raw)

    async def ask(self, frame: str | bytes | Any, timeout: float = 2.0) -> Any:
        """Send ``frame`` (or an object, encoded) and return the answer it got: None
        when it got none (notifications). A probe request sent right after tells when
        every answer due has come; a closing connection ends the wait too."""
        if isinstance(frame, (str, bytes)):
            self.send(frame)
        else:
            self.send_obj(frame)
        probe = f"probe {next(_probes)}"
        self.send_obj({"jsonrpc": "2.0", "method": "rpc.info", "id": probe})
        answers = []
        while True:
            try:
                got = await self.frame(timeout)
            except TimeoutError:
                if self.transport.closed is None:
                    raise
                break
            if isinstance(got, dict) and got.get("id") == probe:
                break
            answers.append(got)
        assert len(answers) <= 1, f"more than one frame came back: {answers}"
        return answers[0] if answers else None

    async def call(self, method: str, params: Any = None, id: Any = 1) -> Any:
        """Request ``method`` and return its whole answer."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            request["params"] = params
        return await self.ask(request)


@contextlib.asynccontextmanager
async def served(
    rpc: RPC,
    *,
    id: str | None = None,
    encoding: str | None = None,
    user: str | None = None,
    meta: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[ServedPeer]:
    """Serve one connection with ``rpc`` for the duration of the block; it is closed
    by the client at the end and served to its end.

    Args:
        id: the connection's id (a random one when None).
        encoding: the ``?encoding=`` the client asks for.
        user, meta: who the connection belongs to, and what presence shows of it.
        config: settings of the connection (``max_message_bytes=...``).
    """
    transport = RecordingTransport()
    query = "" if encoding is None else f"encoding={encoding}"
    info = ScopeInfo("fake", "/rpc", query, [], "127.0.0.1:1", "ws")
    ws = WebSocket(transport, info, Config.load({}, **config))
    peer = ServedPeer(ws, transport, CODECS[encoding or "json"])
    task = asyncio.ensure_future(rpc.serve(ws, id=id, user=user, meta=meta))
    try:
        yield peer
    finally:
        transport.push(CLOSE, 1000)
        await asyncio.wait_for(task, 5)
