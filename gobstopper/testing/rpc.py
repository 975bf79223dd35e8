"""The Python client of the message layer, connected in-process.

``RPCTestClient`` is ``gobstopper.client.Client`` itself (calls, notifications, streams,
events, subscriptions, presence views, credentials, reconnection), whose link dials an
``AsyncWebSocketSession`` instead of a socket: what a test proves with it holds for the
client over the network too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..client import Client
from .errors import WebSocketDenied
from .websocket import AsyncWebSocketSession, _UnboundedLink

if TYPE_CHECKING:
    from .client import AsyncTestClient

__all__ = ["RPCTestClient"]


class RPCTestClient(Client):
    """A ``Client`` of the app behind ``client``, on ``path``; made by
    ``AsyncTestClient.rpc`` (``async with client.rpc("/rpc") as rpc: ...``).

    Args:
        client: the test client that runs the app.
        path: the route, with its query string (``/ws/chat?name=ann``).
        headers: handshake headers sent with every connection (besides the
            ``Authorization`` header that ``credentials`` makes).
        options: ``Client``'s keyword arguments.

    Raises (from ``connect``, on entry):
        WebSocketDenied: the app refused the first handshake (at once, not after the
            timeout: a test wants the status). Later refusals, on reconnections, are
            retried with the backoff as the real client does.
    """

    def __init__(
        self,
        client: AsyncTestClient,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        self._test_client = client
        self._handshake_headers = dict(headers or {})
        self._refused: asyncio.Future[WebSocketDenied] | None = None
        #: The in-process connections opened so far, the current one last.
        self.sessions: list[AsyncWebSocketSession] = []
        super().__init__(f"ws://testserver{path}", dial=self._dial, **options)

    async def connect(self) -> None:
        """Connect and wait until ready, as ``Client.connect`` does.

        Raises:
            WebSocketDenied: the app refused the handshake.
            ConnectTimeout: not ready within ``timeout`` (a ``TimeoutError``, from
                ``gobstopper.errors``; its message says why).
        """
        refused = self._refused = asyncio.get_running_loop().create_future()
        ready = asyncio.ensure_future(super().connect())
        try:
            await asyncio.wait((ready, refused), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._refused = None
            if not ready.done():
                ready.cancel()  # Client.connect closes the client when it fails
                await asyncio.wait((ready,))
        if refused.done():
            raise refused.result()
        ready.result()

    @contextlib.asynccontextmanager
    async def _dial(
        self, url: str, headers: dict[str, str] | None
    ) -> AsyncIterator[_UnboundedLink]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        session = self._test_client.websocket_connect(
            path, headers={**self._handshake_headers, **(headers or {})}
        )
        try:
            await session.connect()
        except WebSocketDenied as exc:
            if self._refused is not None and not self._refused.done():
                self._refused.set_result(exc)
            raise
        self.sessions.append(session)
        try:
            yield _UnboundedLink(session)
        finally:
            await session.close()
