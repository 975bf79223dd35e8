"""A Python client for gobstopper's message layer, that reconnects by itself.

Needs the ``websockets`` package (``pip install 'gobstopper[client]'``).

Example::

    async with Client("ws://127.0.0.1:8000/rpc") as client:
        assert await client.call("add", 2, 3) == 5
        async with await client.subscribe("news.*") as news:
            async for message in news:
                print(message.channel, message.data)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .messages.channels import matches, valid_pattern
from .messages.codec import CODECS, Codec, DecodeError

__all__ = ["CallError", "ChannelMessage", "Client", "Subscription"]

logger = logging.getLogger("gobstopper.client")

REQUEST_CANCELLED = -32800


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


@dataclass(frozen=True)
class ChannelMessage:
    """A message published to a channel: its name and its data."""

    channel: str
    data: Any


class Subscription:
    """A subscription to a channel or pattern: an async iterator of ``ChannelMessage``.

    Messages wait in a queue of ``maxsize``; when a reader falls that far behind, the
    oldest are dropped (counted in ``dropped``). Leave with ``close()`` or ``async with``.
    """

    def __init__(self, client: Client, pattern: str, maxsize: int) -> None:
        self.client = client
        self.pattern = pattern
        self.dropped = 0
        self._queue: asyncio.Queue[ChannelMessage | None] = asyncio.Queue(maxsize)
        self._closed = False

    def _put(self, message: ChannelMessage | None) -> None:
        """Queue a message (None: the end), dropping the oldest when full."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChannelMessage:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def get(self, timeout: float | None = None) -> ChannelMessage:
        """The next message (``asyncio.TimeoutError`` after ``timeout`` seconds)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def close(self) -> None:
        """Unsubscribe (if no other subscription of the client holds the same pattern)."""
        if self._closed:
            return
        self._end()
        await self.client._drop(self)

    def _end(self) -> None:
        """No more messages: the iterator stops once the queue is read."""
        self._closed = True
        self._put(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client:
    """JSON-RPC 2.0 with gobstopper's events, channels and streams, over one WebSocket
    that is reconnected with exponential backoff.

    Args:
        url: the route, e.g. ``ws://127.0.0.1:8000/rpc``.
        encoding: ``json`` or ``msgpack``.
        timeout: seconds a call waits for its answer before ``asyncio.TimeoutError``.
        backoff: the first reconnection delay in seconds; it doubles up to
            ``max_backoff``, with jitter.
        on_notification: called with ``(method, params)`` for every notification the
            server pushes (events, channel messages and stream items included).

    A call made while the connection is down waits for the next connection (within its
    timeout). A call in flight when the connection drops fails with ``ConnectionError``:
    it may or may not have run, so the client never sends it twice. Subscriptions are
    renewed on every new connection; messages published in between are not replayed.
    """

    def __init__(
        self,
        url: str,
        *,
        encoding: str = "json",
        timeout: float = 10.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_notification: Callable[[str, Any], None] | None = None,
    ) -> None:
        if encoding not in CODECS:
            raise ValueError(f"unknown encoding {encoding!r}: choose from {sorted(CODECS)}")
        self.url = url
        self.codec: Codec = CODECS[encoding]
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_notification = on_notification
        #: Connections opened so far (1 after the first, more after reconnections).
        self.connections = 0
        #: This connection's id on the server (``rpc.info``), None while disconnected.
        self.id: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._ws: Any = None
        self._connected: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._lost: asyncio.Event | None = None  # set when the current connection ends
        self._closed: asyncio.Event | None = None
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
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

    # -- the connection -------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the connection loop and wait (``timeout``) for the first connection."""
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "the client needs websockets: pip install 'gobstopper[client]'"
            ) from None
        self._connected = asyncio.Event()
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._closed = asyncio.Event()
        self._closing = False
        self._runner = asyncio.ensure_future(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), self.timeout)
        except BaseException:
            await self.close()  # no connection: stop trying, as nobody will close() us
            raise

    async def close(self) -> None:
        """Close the connection and stop reconnecting; what waits fails with
        ``ConnectionError``."""
        self._closing = True
        if self._closed is not None:
            self._closed.set()  # wakes calls waiting for a connection
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in (self._runner, *self._background):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._fail_pending(ConnectionError("client closed"))
        for subs in self._subscriptions.values():
            for sub in subs:
                sub._end()

    def _endpoint(self) -> str:
        if self.codec.name == "json":
            return self.url
        parts = urlsplit(self.url)
        query = (parts.query + "&" if parts.query else "") + urlencode({"encoding": "msgpack"})
        return urlunsplit(parts._replace(query=query))

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        assert self._connected is not None and self._ready is not None
        delay = self.backoff
        while not self._closing:
            lost = self._lost = asyncio.Event()
            try:
                async with connect(self._endpoint()) as ws:
                    self._ws = ws
                    self.connections += 1
                    self._connected.set()
                    delay = self.backoff
                    self._spawn(self._renew(ws))
                    async for raw in ws:
                        self._dispatch(raw)
            except Exception as exc:  # refused, dropped, or an HTTP answer (503, 409...):
                logger.info("connection to %s lost or refused: %s", self.url, exc)  # retry
            finally:
                self._connected.clear()
                self._ready.clear()
                self._ws = None
                self.id = None
                lost.set()
                self._fail_pending(ConnectionError(f"connection to {self.url} lost"))
            if self._closing:
                return
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # backoff, jittered
            delay = min(delay * 2, self.max_backoff)

    async def _renew(self, ws: Any) -> None:
        """On each new connection: learn its id and subscribe again to every pattern.
        Ready only if that connection is still the current one."""
        assert self._ready is not None
        patterns = tuple(self._subscriptions)
        answers = await asyncio.gather(
            self.call("rpc.info"),
            *(self.call("rpc.subscribe", p) for p in patterns),
            return_exceptions=True,
        )
        if self._ws is not ws:
            return  # that connection is gone already: the next one renews
        for pattern, answer in zip(patterns, answers[1:], strict=True):
            if isinstance(answer, CallError):  # refused now: end those subscriptions
                logger.warning("could not subscribe again to %r: %s", pattern, answer)
                for sub in self._subscriptions.pop(pattern, []):
                    sub._end()
            elif isinstance(answer, BaseException):
                return  # the connection failed meanwhile: the next one renews
        info = answers[0]
        if isinstance(info, BaseException):
            return
        if isinstance(info, dict):
            self.id = info.get("id")
        self._ready.set()
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def ready(self, connection: int | None = None) -> None:
        """Wait until the client is connected with its subscriptions renewed: on any
        connection, or on its ``connection``-th (2: after the first reconnection).

        Example: ``await client.ready(client.connections + 1)`` after a server restart.
        """
        assert self._changed is not None and self._ready is not None, "connect() first"
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self._ready is not None
                    and self._ready.is_set()
                    and (connection is None or self.connections >= connection)
                )
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a callback or renewal failed", exc_info=task.exception())

    async def _wait_connected(self) -> Any:
        """The current connection, once there is one.

        Raises:
            ConnectionError: the client is closed.
        """
        connected, closed = self._connected, self._closed
        assert connected is not None and closed is not None, "connect() first"
        while not connected.is_set() or self._ws is None:
            if self._closing:
                raise ConnectionError("client closed")
            waiters = {
                asyncio.ensure_future(connected.wait()),
                asyncio.ensure_future(closed.wait()),
            }
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        if self._closing:
            raise ConnectionError("client closed")
        return self._ws

    # -- calls ------------------------------------------------------------------------

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` with positional or named arguments (not both); return its result.

        Raises:
            CallError: the server answered with an error.
            asyncio.TimeoutError: no answer within ``timeout``.
            ConnectionError: the connection dropped before the answer.
        """
        request_id, message = self._request(method, args, kwargs)
        try:
            return await asyncio.wait_for(self._exchange(request_id, message), self.timeout)
        finally:
            self._pending.pop(request_id, None)

    def _request(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if args and kwargs:
            raise TypeError("JSON-RPC takes positional or named parameters, not both")
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if args or kwargs:
            message["params"] = list(args) if args else kwargs
        return request_id, message

    async def _exchange(self, request_id: int, message: dict[str, Any]) -> Any:
        """Send a request on the current connection and wait for its answer. A request
        that could not be sent waits for the next connection; one that was sent fails
        with its connection (it may have run: it is never sent twice)."""
        frame = self.codec.encode(message)
        while True:
            ws = await self._wait_connected()
            lost = self._lost
            answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = answer  # before sending: the answer may come fast
            try:
                await ws.send(frame)
            except Exception:
                # It never left: forget this attempt, and once the runner has seen this
                # connection go, send it on the next.
                if self._pending.get(request_id) is answer:
                    del self._pending[request_id]
                if answer.done():
                    answer.exception()  # the runner failed it meanwhile: nobody reads it
                else:
                    answer.cancel()
                if lost is not None:
                    await lost.wait()
                continue
            return await answer

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a notification (no answer), once connected (within ``timeout``)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if args or kwargs:
            message["params"] = list(args) if args else kwargs
        await self._send_once(message)

    async def _send_once(self, message: dict[str, Any]) -> None:
        ws = await asyncio.wait_for(self._wait_connected(), self.timeout)
        await ws.send(self.codec.encode(message))

    async def stream(self, method: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Call a streaming method: yields its items, in order.

        Leaving the loop early (``break``, an exception) cancels the stream on the
        server. ``timeout`` applies to the wait for each item.

        Example: ``async for item in client.stream("count", 10): ...``

        Raises:
            CallError: the server answered with an error (before or after items).
            ConnectionError: the connection dropped during the stream.
        """
        request_id, message = self._request(method, args, kwargs)
        items: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[request_id] = items
        exchange = asyncio.ensure_future(self._exchange(request_id, message))
        finished = False
        try:
            while True:
                if items.empty() and exchange.done():
                    finished = True
                    exchange.result()  # raises the error answer, if any
                    return
                getter = asyncio.ensure_future(items.get())
                done, _ = await asyncio.wait(
                    {getter, exchange}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                if not done:
                    raise asyncio.TimeoutError(f"no item from {method!r} in {self.timeout}s")
        finally:
            self._streams.pop(request_id, None)
            self._pending.pop(request_id, None)
            if not finished and not exchange.done():
                exchange.cancel()
                if self._ws is not None:
                    with contextlib.suppress(Exception):
                        await self.notify("rpc.cancel", id=request_id)

    # -- events ------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback(data, sender)`` for every ``event`` the server pushes (a
        coroutine function is run as a task); ``sender`` is the id of the connection
        that caused it, or None for the server."""
        self._handlers.setdefault(event, []).append(callback)

    def off(self, event: str, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` for ``event``."""
        with contextlib.suppress(KeyError, ValueError):
            self._handlers[event].remove(callback)

    async def emit(self, event: str, data: Any = None, *, ack: bool = False) -> Any:
        """Send the named event (``data``: a dict or a list, its parameters).

        With ``ack``, wait for its handler to have run and return what it returned.
        """
        if data is not None and not isinstance(data, (dict, list)):
            raise TypeError("event data is a dict or a list (JSON-RPC params)")
        if ack:
            request_id = next(self._ids)
            request: dict[str, Any] = {"jsonrpc": "2.0", "method": event, "id": request_id}
            if data is not None:
                request["params"] = data
            try:
                return await asyncio.wait_for(self._exchange(request_id, request), self.timeout)
            finally:
                self._pending.pop(request_id, None)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": event}
        if data is not None:
            message["params"] = data
        await self._send_once(message)
        return None

    # -- channels ------------------------------------------------------------------------

    async def subscribe(self, pattern: str, *, maxsize: int = 1000) -> Subscription:
        """Subscribe to a channel or pattern (``news.*``); active when this returns.

        Raises:
            ValueError: not a channel name or pattern.
            CallError: the server refused (access denied, too many subscriptions).
        """
        if not valid_pattern(pattern):
            raise ValueError(f"not a channel name or pattern: {pattern!r}")
        sub = Subscription(self, pattern, maxsize)
        first = pattern not in self._subscriptions
        self._subscriptions.setdefault(pattern, []).append(sub)
        try:
            if first:
                # A second subscriber to the pattern meanwhile waits for this answer.
                confirmed = asyncio.get_running_loop().create_future()
                self._subscribing[pattern] = confirmed
                try:
                    await self.call("rpc.subscribe", pattern)
                    confirmed.set_result(None)
                except BaseException as exc:
                    confirmed.set_exception(exc)
                    confirmed.exception()  # retrieved: it may have no other reader
                    raise
                finally:
                    del self._subscribing[pattern]
            elif pattern in self._subscribing:
                await asyncio.shield(self._subscribing[pattern])
        except BaseException:
            self._unregister(sub)
            raise
        return sub

    def _unregister(self, sub: Subscription) -> bool:
        """Forget ``sub``; True if it was the pattern's last subscription."""
        subs = self._subscriptions.get(sub.pattern)
        if subs is None or sub not in subs:
            return False
        subs.remove(sub)
        if subs:
            return False
        del self._subscriptions[sub.pattern]
        return True

    async def _drop(self, sub: Subscription) -> None:
        if not self._unregister(sub):
            return
        if self._ws is not None and not self._closing:
            with contextlib.suppress(Exception):
                await self.call("rpc.unsubscribe", sub.pattern)

    async def publish(self, channel: str, data: Any = None, *, echo: bool = False) -> int:
        """Publish to a channel (if the server lets clients publish there); returns the
        subscribers reached on the server's node."""
        return int(await self.call("rpc.publish", channel=channel, data=data, echo=echo))

    # -- inbound ---------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            payload = self.codec.decode(raw)
        except (DecodeError, RecursionError):
            logger.warning("ignored an undecodable message from %s", self.url)
            return
        for item in payload if isinstance(payload, list) else [payload]:
            if not isinstance(item, dict):
                continue
            if "method" in item and "id" not in item:
                self._notification(item["method"], item.get("params"))
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

    def _notification(self, method: Any, params: Any) -> None:
        if self.on_notification is not None:
            try:
                self.on_notification(method, params)
            except Exception:
                logger.exception("notification callback failed")
        if not isinstance(params, dict):
            return
        if method == "rpc.stream":
            queue = self._streams.get(params.get("id"))  # type: ignore[arg-type]
            if queue is not None:
                queue.put_nowait(params.get("item"))
        elif method == "rpc.message":
            channel = params.get("channel")
            if not isinstance(channel, str):
                return
            message = ChannelMessage(channel, params.get("data"))
            for pattern, subs in self._subscriptions.items():
                if pattern == channel or matches(pattern, channel):
                    for sub in subs:
                        sub._put(message)
        elif method == "rpc.event":
            for callback in tuple(self._handlers.get(str(params.get("event")), ())):
                try:
                    result = callback(params.get("data"), params.get("from"))
                    if inspect.isawaitable(result):
                        self._spawn(result)
                except Exception:
                    logger.exception("handler of event %r failed", params.get("event"))

    def _fail_pending(self, exc: Exception) -> None:
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(exc)
