"""A server played by hand for unit tests of the Python client: no sockets.

``FakeServer`` stands in for ``websockets``' ``connect`` (patched in for a test): each
connection the client's ``Link`` opens becomes a ``FakeSocket`` the test accepts, reads
the client's requests from, and feeds frames to. Frames pushed one after the other are
read by the client without an event-loop turn in between, as from one network read.
Each socket keeps the HTTP headers the client sent with its handshake (``headers``).
``connected``, ``subscribed`` and ``reconnected`` play the usual openings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import pytest

from gobstopper.client import Client, Subscription
from gobstopper.messages import protocol

__all__ = [
    "FakeServer",
    "FakeSocket",
    "answer",
    "connected",
    "message",
    "reconnected",
    "subscribed",
]

_DROP = object()


class FakeSocket:
    """One connection, seen from the server's side."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        #: The HTTP headers the client sent with its handshake (None: none).
        self.headers = headers
        self._incoming: asyncio.Queue[Any] = asyncio.Queue()  # frames for the client
        self._requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # from the client
        self.closed = False

    # -- the websockets connection the client holds ----------------------------------

    async def send(self, frame: str | bytes) -> None:
        if self.closed:
            raise ConnectionError("closed")
        self._requests.put_nowait(json.loads(frame))

    async def close(self) -> None:
        self.drop()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[str]:
        while True:
            frame = await self._incoming.get()
            if frame is _DROP:
                return
            yield frame

    async def __aenter__(self) -> FakeSocket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closed = True

    # -- what the test does ------------------------------------------------------------

    def push(self, *messages: Any) -> None:
        """Send these messages to the client, each as one frame."""
        for message in messages:
            self._incoming.put_nowait(json.dumps(message))

    def drop(self) -> None:
        """End the connection (the client sees it close and reconnects)."""
        self.closed = True
        self._incoming.put_nowait(_DROP)

    async def request(self, method: str | None = None) -> dict[str, Any]:
        """The client's next request (of ``method``, if given: others are answered with
        null first)."""
        while True:
            message = await asyncio.wait_for(self._requests.get(), 2)
            if method is None or message.get("method") == method:
                return message
            if "id" in message:
                self.push(protocol.result(message["id"], None))

    async def renewal(self, count: int) -> dict[str, dict[str, Any]]:
        """The ``rpc.info`` and ``count`` ``rpc.subscribe`` requests of a new connection,
        by channel (``rpc.info`` under its method name); none answered yet."""
        found: dict[str, dict[str, Any]] = {}
        while len(found) < count + 1:
            message = await asyncio.wait_for(self._requests.get(), 2)
            if message["method"] == protocol.INFO:
                found[protocol.INFO] = message
            else:
                assert message["method"] == protocol.SUBSCRIBE, message
                found[message["params"]["channel"]] = message
        return found

    def nothing_sent(self) -> bool:
        return self._requests.empty()


class FakeServer:
    """Accepts the client's connections; patch it in with ``FakeServer.install``."""

    def __init__(self) -> None:
        self._accepted: asyncio.Queue[FakeSocket] = asyncio.Queue()

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
        import websockets.asyncio.client

        server = cls()
        monkeypatch.setattr(websockets.asyncio.client, "connect", server.connect)
        return server

    def connect(self, url: str, *, additional_headers: dict[str, str] | None = None) -> FakeSocket:
        sock = FakeSocket(additional_headers)
        self._accepted.put_nowait(sock)
        return sock

    async def accept(self) -> FakeSocket:
        """The client's next connection."""
        return await asyncio.wait_for(self._accepted.get(), 2)


def answer(request: dict[str, Any], value: Any) -> dict[str, Any]:
    return protocol.result(request["id"], value)


def message(channel: str, data: Any, offset: int | None = None, epoch: str | None = None) -> Any:
    """An ``rpc.message`` push, with a position when given."""
    params: dict[str, Any] = {"channel": channel, "data": data}
    if offset is not None:
        params |= {"offset": offset, "epoch": epoch}
    return protocol.notification(protocol.MESSAGE, params)


async def connected(client: Client, server: FakeServer, subscriptions: int = 0) -> FakeSocket:
    """Open a connection (the first, or the next after a drop) and answer its renewal
    (``subscriptions`` rpc.subscribe requests answered without a position)."""
    ready = asyncio.ensure_future(
        client.connect() if client.connections == 0 else client.ready(client.connections + 1)
    )
    sock = await server.accept()
    found = await sock.renewal(subscriptions)
    for name, request in found.items():
        value = {"id": "c1"} if name == protocol.INFO else {"channel": name, "subscriptions": 1}
        sock.push(answer(request, value))
    await asyncio.wait_for(ready, 2)
    return sock


async def subscribed(
    client: Client, sock: FakeSocket, channel: str, reply: dict[str, Any], **kwargs: Any
) -> tuple[Subscription, dict[str, Any]]:
    """Subscribe, answering with ``reply`` (channel and count added)."""
    pending = asyncio.ensure_future(client.subscribe(channel, **kwargs))
    request = await sock.request(protocol.SUBSCRIBE)
    sock.push(answer(request, {"channel": channel, "subscriptions": 1} | reply))
    return await asyncio.wait_for(pending, 2), request


async def reconnected(
    client: Client, server: FakeServer, sock: FakeSocket, subscriptions: int
) -> tuple[FakeSocket, dict[str, dict[str, Any]]]:
    """Drop ``sock``; return the next connection and its renewal requests, unanswered."""
    sock.drop()
    new = await server.accept()
    return new, await new.renewal(subscriptions)
