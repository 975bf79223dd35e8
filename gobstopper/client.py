"""A Python client for gobstopper's JSON-RPC routes, that reconnects by itself.

Needs the ``websockets`` package (``pip install 'gobstopper[client]'``).

Example::

    async with Client("ws://127.0.0.1:8000/rpc") as client:
        assert await client.call("add", 2, 3) == 5
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["CallError", "Client"]

logger = logging.getLogger("gobstopper.client")


class CallError(Exception):
    """The server answered a call with a JSON-RPC error.

    Attributes:
        code: the JSON-RPC error code (e.g. -32601 method not found, or the app's own).
        message: the error's message.
        data: the error's data, if any.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({data!r})" if data is not None else ""))
        self.code = code
        self.message = message
        self.data = data


class Client:
    """JSON-RPC 2.0 over one WebSocket, reconnected with exponential backoff.

    Args:
        url: the route, e.g. ``ws://127.0.0.1:8000/rpc``.
        timeout: seconds a call waits for its answer before ``asyncio.TimeoutError``.
        backoff: the first reconnection delay in seconds; it doubles up to
            ``max_backoff``, with jitter.
        on_notification: called with ``(method, params)`` for every notification the
            server pushes.

    A call made while the connection is down waits for the next connection (within its
    timeout). A call in flight when the connection drops fails with ``ConnectionError``:
    it may or may not have run, so the client never sends it twice.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_notification: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_notification = on_notification
        #: Connections opened so far (1 after the first, more after reconnections).
        self.connections = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ws: Any = None
        self._connected: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Start the connection loop and wait (``timeout``) for the first connection."""
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "the client needs websockets: pip install 'gobstopper[client]'"
            ) from None
        self._connected = asyncio.Event()
        self._closing = False
        self._runner = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self._connected.wait(), self.timeout)

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._fail_pending(ConnectionError("client closed"))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` with positional or named arguments (not both); return its result.

        Raises:
            CallError: the server answered with an error.
            asyncio.TimeoutError: no answer within ``timeout``.
            ConnectionError: the connection dropped before the answer.
        """
        if args and kwargs:
            raise TypeError("JSON-RPC takes positional or named parameters, not both")
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if args or kwargs:
            message["params"] = list(args) if args else kwargs
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        connected = self._connected
        assert connected is not None, "connect() first"

        async def exchange() -> Any:
            while True:
                await connected.wait()
                self._pending[request_id] = answer
                try:
                    await self._ws.send(json.dumps(message))
                    break
                except Exception:  # the connection is gone and the call never left:
                    connected.clear()  # wait for the next one, then send it there
            return await answer

        try:
            return await asyncio.wait_for(exchange(), self.timeout)
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a notification (no answer)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if args or kwargs:
            message["params"] = list(args) if args else kwargs
        assert self._connected is not None, "connect() first"
        await asyncio.wait_for(self._connected.wait(), self.timeout)
        await self._ws.send(json.dumps(message))

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        assert self._connected is not None
        delay = self.backoff
        while not self._closing:
            try:
                async with connect(self.url) as ws:
                    self._ws = ws
                    self.connections += 1
                    self._connected.set()
                    delay = self.backoff
                    async for raw in ws:
                        self._dispatch(raw)
            except (OSError, ConnectionClosed, asyncio.TimeoutError) as exc:
                logger.info("connection to %s lost or refused: %s", self.url, exc)
            finally:
                self._connected.clear()
                self._ws = None
                self._fail_pending(ConnectionError(f"connection to {self.url} lost"))
            if self._closing:
                return
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # backoff, jittered
            delay = min(delay * 2, self.max_backoff)

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            logger.warning("ignored a message that is not JSON from %s", self.url)
            return
        for item in payload if isinstance(payload, list) else [payload]:
            if not isinstance(item, dict):
                continue
            if "method" in item and "id" not in item:
                if self.on_notification is not None:
                    try:
                        self.on_notification(item["method"], item.get("params"))
                    except Exception:
                        logger.exception("notification callback failed")
                continue
            answer = self._pending.get(item.get("id"))  # type: ignore[arg-type]
            if answer is None or answer.done():
                continue
            if "error" in item:
                error = item["error"] or {}
                answer.set_exception(
                    CallError(
                        int(error.get("code", 0)), str(error.get("message", "")), error.get("data")
                    )
                )
            else:
                answer.set_result(item.get("result"))

    def _fail_pending(self, exc: Exception) -> None:
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(exc)
