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
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .._util import Backoff
from .state import ConnectionState, Phase

__all__ = ["Dial", "Link", "LinkSocket", "describe_error", "dial_websockets"]

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


def describe_error(exc: BaseException) -> str:
    """Say what a connection attempt failed with: the HTTP status and reason of a refused
    handshake, a DNS failure, or the exception's type and words."""
    response = getattr(exc, "response", None)  # websockets' InvalidStatus
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        words = f"HTTP {status} {getattr(response, 'reason_phrase', '')}".strip()
        body = getattr(response, "body", b"")
        if isinstance(body, bytes) and 0 < len(body) <= 200:
            words += f": {body.decode('utf-8', 'replace').strip()}"
        return f"the server refused the handshake: {words}"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed: {exc}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not str(exc):
        return "the attempt timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Link:
    """One WebSocket to ``url``, opened again after every drop or refusal.

    Args:
        url: where to connect.
        backoff: the delays between attempts (reset by a connection that opens).
        on_open: called with the generation of each connection that opens.
        on_frame: called with each frame received.
        on_lost: called when the connection drops or an attempt fails, with what
            happened in words, the close code (if any) and the delay before the next
            attempt; with ``None``s when ``close()`` ended it.
        on_change: called with the phase after every transition, and after every failed
            attempt (which changes ``failures`` but may leave the phase as it was).
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
        on_lost: Callable[[str | None, int | None, float | None], None],
        on_change: Callable[[Phase], None] | None = None,
        headers: Callable[[], Awaitable[dict[str, str] | None]] | None = None,
        dial: Dial = dial_websockets,
    ) -> None:
        self.url = url
        self.state = ConnectionState(self._changed)
        self._backoff = backoff
        self._on_open = on_open
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._on_change = on_change
        #: Attempts failed (or connections dropped) since the last ready connection.
        self.failures = 0
        #: What the last failed attempt or dropped connection failed with, in words.
        self.last_error: str | None = None
        self._headers = headers
        self._dial = dial
        self._ws: Any = None  # the current connection's socket, while connected
        self._change: asyncio.Future[None] | None = None  # resolved at the next transition
        self._runner: asyncio.Task[None] | None = None
        self._dropped: int | None = None  # the generation drop() closed, if it did

    def start(self) -> None:
        """Start the reconnection loop, unless it runs already."""
        if self.state.phase in (Phase.IDLE, Phase.CLOSED):
            self.failures = 0
            self.last_error = None
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
            self._dropped = generation  # words the cause: the client closed it, not the server
            with contextlib.suppress(Exception):  # it may be failing already
                await ws.close()

    async def gone(self, generation: int) -> None:
        """Wait until connection ``generation`` is no longer the current one."""
        await self.wait_for(lambda: not self.state.current(generation))

    def _changed(self, phase: Phase) -> None:
        if phase is Phase.READY:
            self.failures = 0
        # Every transition wakes every waiter; each checks its own condition again.
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)
        if self._on_change is not None:
            self._on_change(phase)

    async def _run(self) -> None:
        while not self.state.closed:
            cause: str | None = None
            code: int | None = None
            delay: float | None = None
            try:
                cause, code = await self._attempt()
            except asyncio.CancelledError:
                # close() (reported below as closed), or the event loop shutting down
                # with the client open: no drop, no attempt failed, no hook to call.
                self._ws = None
                if self.state.closed:
                    self._on_lost(None, None, None)
                raise
            except Exception as exc:  # refused, dropped, or an HTTP answer (503, 409...):
                cause = describe_error(exc)  # retried
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                logger.info("connection to %s lost or refused: %s", self.url, cause)
            self._ws = None
            if not self.state.closed:
                self.failures += 1
                self.last_error = cause or "the connection ended"
                delay = self._backoff.next()
            self.state.lost()
            if not self.state.closed:
                self._changed(self.state.phase)  # connecting may now be reconnecting
                self._on_lost(self.last_error, code, delay)
            else:
                self._on_lost(None, None, None)
            if self.state.closed or delay is None:
                return
            await asyncio.sleep(delay)

    async def _attempt(self) -> tuple[str, int | None]:
        """One connection: dial, then hand over its frames until it drops. Returns how it
        ended, in words, and its close code."""
        try:
            headers = None if self._headers is None else await self._headers()
        except Exception as exc:
            # The application's code (a credentials callable): its traceback helps.
            logger.exception("the headers to connect to %s could not be made", self.url)
            return f"the credentials failed: {describe_error(exc)}", None
        async with self._dial(self.url, headers) as ws:
            if self.state.closed:
                return "closed", None  # closed while the handshake ran
            self._ws = ws
            generation = self.state.opened()
            self._backoff.reset()
            self._on_open(generation)
            async for raw in ws:
                self._on_frame(raw)
        code = getattr(ws, "close_code", None)
        code = code if isinstance(code, int) else None
        reason = getattr(ws, "close_reason", None)
        closer = "the client" if self._dropped == generation else "the server"
        words = f"{closer} closed the connection" + (f" with code {code}" if code else "")
        return words + (f": {reason}" if reason else ""), code
