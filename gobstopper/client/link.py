"""The client's WebSocket, reconnected with backoff: the I/O around ``state.py``.

``Link`` owns the socket, the reconnection loop and the one future per transition that
wakes whatever waits for a phase; what travels on the socket is the client's business,
handed over through three callbacks (opened, a frame, lost), and the headers of each
attempt are asked for just before it (a credential that may have expired meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .._util import Backoff
from .state import ConnectionState, Phase

__all__ = ["Dial", "Link", "LinkSocket", "dial_websockets"]

logger = logging.getLogger("gobstopper.client")


class LinkSocket(Protocol):
    """What ``Link`` needs of a connection: the part of a ``websockets`` client
    connection it uses (``gobstopper.testing`` provides an in-process one)."""

    async def send(self, message: str | bytes) -> None: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


#: Opens one connection: ``dial(url, headers)`` gives a context manager whose value is the
#: open socket (entering it does the handshake; a refusal raises) and whose exit closes it.
Dial = Callable[[str, "dict[str, str] | None"], AbstractAsyncContextManager[LinkSocket]]


def dial_websockets(
    url: str, headers: dict[str, str] | None
) -> AbstractAsyncContextManager[LinkSocket]:
    """The default ``Dial``: a connection of the ``websockets`` package."""
    # Looked up at each call, not at import: websockets is an optional dependency.
    from websockets.asyncio.client import connect

    return connect(url, additional_headers=headers)


class Link:
    """One WebSocket to ``url``, opened again after every drop or refusal.

    Args:
        url: where to connect.
        backoff: the delays between attempts (reset by a connection that opens).
        on_open: called with the generation of each connection that opens.
        on_frame: called with each frame received.
        on_lost: called when the connection drops (and after each refused attempt).
        headers: called before each attempt for the HTTP headers to send with it (None:
            none); when it raises, the attempt fails as a refused one does.
        dial: opens each connection (default: ``dial_websockets``).
    """

    def __init__(
        self,
        url: str,
        backoff: Backoff,
        *,
        on_open: Callable[[int], None],
        on_frame: Callable[[str | bytes], None],
        on_lost: Callable[[], None],
        headers: Callable[[], Awaitable[dict[str, str] | None]] | None = None,
        dial: Dial = dial_websockets,
    ) -> None:
        self.url = url
        self.state = ConnectionState(self._changed)
        self._backoff = backoff
        self._on_open = on_open
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._headers = headers
        self._dial = dial
        self._ws: Any = None  # the current connection's socket, while connected
        self._change: asyncio.Future[None] | None = None  # resolved at the next transition
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the reconnection loop, unless it runs already."""
        if self.state.phase in (Phase.IDLE, Phase.CLOSED):
            self.state.start()
            self._backoff.reset()
            self._runner = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Close the socket and stop the loop; waiters see the closed phase at once."""
        self.state.close()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked after every transition."""
        while not predicate():
            if self._change is None:
                self._change = asyncio.get_running_loop().create_future()
            # asyncio.wait, not await: a cancelled waiter must not cancel the shared future.
            await asyncio.wait((self._change,))

    async def socket(self) -> tuple[Any, int]:
        """The current connection's socket and generation, once there is one.

        Raises:
            ConnectionError: the client is closed.
            RuntimeError: the loop was never started.
        """
        if self.state.phase is Phase.IDLE:
            raise RuntimeError("connect() first")
        await self.wait_for(lambda: self.state.connected or self.state.closed)
        if self.state.closed:
            raise ConnectionError("client closed")
        return self._ws, self.state.generation

    async def drop(self, generation: int) -> None:
        """Close connection ``generation`` if it is still the current one: the loop then
        connects again, after the backoff."""
        ws = self._ws
        if ws is not None and self.state.current(generation):
            with contextlib.suppress(Exception):  # it may be failing already
                await ws.close()

    async def gone(self, generation: int) -> None:
        """Wait until connection ``generation`` is no longer the current one."""
        await self.wait_for(lambda: not self.state.current(generation))

    def _changed(self, phase: Phase) -> None:
        # Every transition wakes every waiter; each checks its own condition again.
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    async def _run(self) -> None:
        while not self.state.closed:
            try:
                await self._attempt()
            except Exception as exc:  # refused, dropped, or an HTTP answer (503, 409...):
                logger.info("connection to %s lost or refused: %s", self.url, exc)  # retry
            finally:
                self._ws = None
                self.state.lost()
                self._on_lost()
            if self.state.closed:
                return
            await self._backoff.wait()

    async def _attempt(self) -> None:
        """One connection: dial, then hand over its frames until it drops."""
        try:
            headers = None if self._headers is None else await self._headers()
        except Exception:
            # The application's code (a credentials callable): its traceback helps.
            logger.exception("the headers to connect to %s could not be made", self.url)
            return
        async with self._dial(self.url, headers) as ws:
            if self.state.closed:
                return  # closed while the handshake ran
            self._ws = ws
            generation = self.state.opened()
            self._backoff.reset()
            self._on_open(generation)
            async for raw in ws:
                self._on_frame(raw)
