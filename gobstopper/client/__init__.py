"""A Python client for gobstopper's message layer, that reconnects by itself.

Needs the ``websockets`` package (the ``client`` extra: ``pip install -e '.[client]'``);
it imports neither granian nor the server's modules.

Examples:
    ```python
    async with Client("ws://127.0.0.1:8000/rpc") as client:
        assert await client.call("add", 2, 3) == 5
        async with await client.subscribe("news.*") as news:
            async for message in news:
                print(message.channel, message.data)
    ```

A subscription to a channel that keeps history on the server tracks its ``Position`` and
resumes from it on every reconnection (``docs/rpc.md``: positions and recovery).
``presence(channel)`` is a live view of who is in a channel that tracks presence
(``presence.py``). ``credentials`` gives a fresh token for every connection and for every
refresh the server asks for before the current one expires.

The connection's life cycle is the pure state machine of ``state.py``; this module adds
the socket, the pending calls, and one future per transition that wakes whatever waits
for the next phase. What a user sees of it (``status``, the ``on_open``, ``on_close`` and
``on_status`` hooks, the words of ``ClientTimeout``) is ``lifecycle.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeGuard
from urllib.parse import urlencode, urlsplit, urlunsplit

from .._util import Backoff, TaskSet
from ..errors import ClientTimeout, ConnectTimeout
from ..messages import protocol
from ..messages.channels import matches
from ..messages.codec import CODECS, Codec, DecodeError
from .channels import Channels
from .lifecycle import Disconnect, Hook, Lifecycle, Status
from .link import Dial, Link, LinkSocket, dial_websockets
from .presence import PresenceChange, PresenceView
from .state import Phase
from .subscription import (
    CallError,
    ChannelMessage,
    History,
    Position,
    RecoveryFailed,
    Subscription,
)

__all__ = [
    "CallError",
    "ChannelMessage",
    "Client",
    "ClientTimeout",
    "ConnectTimeout",
    "Credentials",
    "Dial",
    "Disconnect",
    "History",
    "LinkSocket",
    "Phase",
    "Position",
    "PresenceChange",
    "PresenceView",
    "RecoveryFailed",
    "Status",
    "Subscription",
]

logger = logging.getLogger("gobstopper.client")

#: What ``Client(credentials=...)`` takes: a function, sync or async, returning a token
#: (None: connect without one).
Credentials = Callable[[], str | Awaitable[str | None] | None]


class Client(Lifecycle, Channels):
    """JSON-RPC 2.0 with gobstopper's events, channels and streams, over one WebSocket
    that is reconnected with exponential backoff.

    Args:
        url: the route, e.g. ``ws://127.0.0.1:8000/rpc``.
        encoding: ``json`` or ``msgpack``.
        timeout: seconds ``connect()`` waits for a connection, and a call for its
            answer, before ``ConnectTimeout`` / ``ClientTimeout`` (both TimeoutErrors).
        backoff: the first reconnection delay in seconds; it doubles up to
            ``max_backoff``, with jitter.
        on_notification: called with ``(method, params)`` for every notification the
            server pushes (events, channel messages and stream items included).
        credentials: called (sync or async) before every connection attempt for a token,
            sent as ``Authorization: Bearer <token>`` (None: no header), and again when
            the server says the credential is about to expire (then sent with
            ``rpc.refresh``). An exception from it fails that attempt, which is retried
            with the backoff.
        dial: opens each connection (default: a ``websockets`` connection to ``url``);
            ``gobstopper.testing`` passes one that runs the app in-process.
        on_open: called with ``rpc.info``'s answer each time the client is open (also
            after a reconnection). Like ``on_close`` and ``on_status``, sync or async
            (run as a task), settable later as an attribute; one that raises is logged.
        on_close: called with a ``Disconnect`` (cause, close code, attempt, delay) when
            a connection drops or an attempt fails; not on ``close()``.
        on_status: called with ``(status, close_reason)`` whenever ``status`` changes
            (``close_reason``: the ``rpc.close`` of the drop that made it
            ``reconnecting``, None otherwise).

    Raises:
        ValueError: an unknown encoding, or not ``0 < backoff <= max_backoff``.

    A call made while the connection is down waits for the next connection (within its
    timeout). A call in flight when the connection drops fails with ``ConnectionError``:
    it may or may not have run, so the client never sends it twice. Subscriptions are
    renewed on every new connection; messages published in between are not replayed,
    except on channels that keep history (see ``subscribe()``). Presence views
    (``presence()``) start over from each renewal's answer.
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
        credentials: Credentials | None = None,
        dial: Dial | None = None,
        on_open: Hook | None = None,
        on_close: Hook | None = None,
        on_status: Hook | None = None,
    ) -> None:
        if encoding not in CODECS:
            raise ValueError(f"unknown encoding {encoding!r}: choose from {sorted(CODECS)}")
        self._url = url
        self.codec: Codec = CODECS[encoding]
        self.timeout = timeout
        self._backoff = Backoff(backoff, max_backoff)
        self.on_notification = on_notification
        #: This connection's id on the server (``rpc.info``), None while disconnected.
        self.id: str | None = None
        #: ``(code, reason)`` of the last ``rpc.close`` event the server sent before
        #: closing a connection (a credential that expired, a refused refresh), or None.
        #: Kept after the client reconnects. Under RSGI the close frame carries no code:
        #: this is how the client learns it.
        self.close_reason: tuple[int, str] | None = None
        #: ``rpc.info``'s answer on the current connection, None while disconnected.
        self.info: Any = None
        # rpc.close's (code, reason) on the current connection only: what its drop reports.
        self._server_close: tuple[int, str] | None = None
        Lifecycle.__init__(self, on_open, on_close, on_status)
        self._credentials = credentials
        self._link = Link(
            self._endpoint(),
            self._backoff,
            on_open=self._opened,
            on_frame=self._dispatch,
            on_lost=self._lost,
            on_change=self._phase_changed,
            headers=None if credentials is None else self._headers,
            dial=dial_websockets if dial is None else dial,
        )
        self._dials_websockets = dial is None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Run on an answer as it is read, before the next frame: what a subscribe answer
        # changes must land between the messages before it and those after.
        self._on_answer: dict[int, Callable[[protocol.Response], None]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        Channels.__init__(self)
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._tasks = TaskSet(logger, "a callback or renewal")

    @property
    def url(self) -> str:
        """The route the client connects to (fixed when it is created)."""
        return self._url

    @property
    def backoff(self) -> float:
        """The first reconnection delay, in seconds (fixed when the client is created)."""
        return self._backoff.first

    @property
    def max_backoff(self) -> float:
        """The longest reconnection delay, in seconds (fixed when the client is created)."""
        return self._backoff.maximum

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
        """Start the connection loop and wait (``timeout``) for the first ready
        connection; on failure the client stops, as nobody will close() it.

        Raises:
            RuntimeError: websockets is not installed.
            ConnectTimeout: no ready connection within ``timeout``; its message names
                the URL, the attempts that failed and the last error.
        """
        if self._dials_websockets:
            try:
                import websockets  # noqa: F401
            except ImportError:
                raise RuntimeError(
                    "the client needs websockets: install the `client` extra "
                    "(`pip install -e '.[client]'` in a checkout, or `pip install websockets`)"
                ) from None
        self._link.start()
        try:
            await asyncio.wait_for(self.ready(), self.timeout)
        except asyncio.TimeoutError:
            error = self._connect_timeout()  # before close() makes the status closed
            await self.close()
            raise error from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection and stop reconnecting; what waits fails with
        ``ConnectionError``."""
        await self._link.close()
        await self._tasks.cancel()
        self._fail_pending(ConnectionError("client closed"))
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.end()

    def _endpoint(self) -> str:
        if self.codec.name == "json":
            return self.url
        parts = urlsplit(self.url)
        query = (parts.query + "&" if parts.query else "") + urlencode({"encoding": "msgpack"})
        return urlunsplit(parts._replace(query=query))

    async def _credential(self) -> str | None:
        """A token from ``credentials`` (None without it).

        Raises:
            TypeError: it returned neither a string nor None.
        """
        if self._credentials is None:
            return None
        token = self._credentials()
        if inspect.isawaitable(token):
            token = await token
        if token is not None and not isinstance(token, str):
            raise TypeError(f"credentials returned {type(token).__name__}, not a str or None")
        return token

    async def _headers(self) -> dict[str, str] | None:
        token = await self._credential()
        return None if token is None else {"Authorization": f"Bearer {token}"}

    async def refresh(self) -> Any:
        """Present a fresh token from ``credentials`` on the current connection
        (``rpc.refresh``); what the client does by itself on ``rpc.refresh_due``.
        Returns the server's answer, ``{"user", "expires_at"}``.

        Raises:
            RuntimeError: the client has no ``credentials``, or they gave no token.
            CallError: -32005 when the server refused it (it then closes the connection,
                with the reason in ``close_reason``; the client reconnects with a new
                token).
        """
        if self._credentials is None:
            raise RuntimeError("refresh() needs Client(credentials=...)")
        return await self._refresh_on(self._link.state.generation)

    async def _refresh_on(self, generation: int) -> Any:
        """``rpc.refresh`` on connection ``generation`` only: never on a later one, which
        got a fresh token when it connected (and would be closed for a refused one).

        Raises:
            ConnectionError: that connection is not the current one (any more).
        """
        token = await self._credential()
        if token is None:
            raise RuntimeError("credentials gave no token to refresh with")
        message = protocol.request(protocol.REFRESH, {"token": token}, next(self._ids))
        return await self._ask(message, generation=generation)

    async def _refresh_due(self, generation: int) -> None:
        try:
            await self._refresh_on(generation)
        except Exception as exc:
            # The server closes the connection at expiry; the next one gets a new token.
            logger.warning("refreshing the credential of %s failed: %r", self.url, exc)

    def _opened(self, generation: int) -> None:
        self._server_close = None
        self._tasks.spawn(self._renew(generation))

    def _lost(self, cause: str | None, code: int | None, delay: float | None) -> None:
        self.id = None
        self.info = None
        self._fail_pending(ConnectionError(f"connection to {self.url} lost: {cause or 'closed'}"))
        if cause is not None and delay is not None:
            self._disconnected(cause, code, delay)
        self._server_close = None  # reported with this drop; failed attempts after have none

    async def _renew(self, generation: int) -> None:
        """On each new connection: learn its id and subscribe again to every pattern
        (a channel with a position from there). Ready only if that connection is still the
        current one."""
        patterns = tuple(p for p in self._subscriptions if self._renewable(p))
        answers = await asyncio.gather(
            self.call(protocol.INFO),
            *(self._resubscribe(p) for p in patterns),
            return_exceptions=True,
        )
        if not self._link.state.current(generation):
            return  # that connection is gone already: the next one renews
        for pattern, answer in zip(patterns, answers[1:], strict=True):
            if isinstance(answer, CallError) and answer.code == protocol.INTERNAL_ERROR:
                # The server could not do it now (its history store is away): not a
                # refusal. Start over on a new connection, positions kept.
                logger.warning("subscribing again to %r failed for now: %s", pattern, answer)
                await self._link.drop(generation)
                return
            if isinstance(answer, CallError):  # refused now: end those subscriptions
                logger.warning("could not subscribe again to %r: %s", pattern, answer)
                for sub in self._subscriptions.pop(pattern, []):
                    sub.end()
            elif isinstance(answer, BaseException):
                return  # the connection failed meanwhile: the next one renews
        info = answers[0]
        if isinstance(info, BaseException):
            return
        if isinstance(info, dict):
            self.id = info.get("id")
        self.info = info
        self._link.state.renewed(generation)

    # -- calls ------------------------------------------------------------------------

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` with positional or named arguments (not both); return its result.

        Raises:
            CallError: the server answered with an error.
            ClientTimeout: no answer within ``timeout`` (a TimeoutError; its message names
                the method and says whether the client was open when the wait ended).
            ConnectionError: the connection dropped before the answer.
        """
        request_id = next(self._ids)
        return await self._ask(protocol.request(method, _params(args, kwargs), request_id))

    async def _ask(
        self,
        message: dict[str, Any],
        on_answer: Callable[[protocol.Response], None] | None = None,
        generation: int | None = None,
    ) -> Any:
        """Send a request and wait (``timeout``) for its answer; ``on_answer`` is called
        with the answer as soon as it is read, before any later frame. With
        ``generation``: on that connection only (see ``_exchange``)."""
        request_id = message["id"]
        if on_answer is not None:
            self._on_answer[request_id] = on_answer
        try:
            exchange = self._exchange(request_id, message, generation)
            return await asyncio.wait_for(exchange, self.timeout)
        except asyncio.TimeoutError:
            what = f"no answer to {message['method']!r} within {self.timeout}s"
            raise self._timeout(what, self.timeout) from None
        finally:
            self._pending.pop(request_id, None)
            self._on_answer.pop(request_id, None)

    async def _exchange(
        self, request_id: int, message: dict[str, Any], pinned: int | None = None
    ) -> Any:
        """Send a request on the current connection and wait for its answer. A request
        that could not be sent waits for the next connection; one that was sent fails
        with its connection (it may have run: it is never sent twice).

        Args:
            pinned: send it on connection ``pinned`` or not at all (``ConnectionError``).
        """
        frame = self.codec.encode(message)
        while True:
            if pinned is not None and not self._link.state.current(pinned):
                raise ConnectionError(f"connection {pinned} to {self.url} is gone")
            ws, generation = await self._link.socket()
            if pinned is not None and generation != pinned:
                raise ConnectionError(f"connection {pinned} to {self.url} is gone")
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
                await self._link.gone(generation)
                continue
            return await answer

    async def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification (no answer), once connected (within ``timeout``)."""
        await self._send_once(protocol.notification(method, _params(args, kwargs)))

    async def _send_once(self, message: dict[str, Any]) -> None:
        try:
            ws, _ = await asyncio.wait_for(self._link.socket(), self.timeout)
        except asyncio.TimeoutError:
            what = f"could not send {message['method']!r} within {self.timeout}s"
            raise self._timeout(what, self.timeout) from None
        await ws.send(self.codec.encode(message))

    async def stream(self, method: str, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Call a streaming method: yields its items, in order.

        Leaving the loop early (``break``, an exception) cancels the stream on the
        server. ``timeout`` applies to the wait for each item.

        Example: ``async for item in client.stream("count", 10): ...``

        Raises:
            CallError: the server answered with an error (before or after items).
            ConnectionError: the connection dropped during the stream.
        """
        request_id = next(self._ids)
        message = protocol.request(method, _params(args, kwargs), request_id)
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
                    what = f"no item from {method!r} within {self.timeout}s"
                    raise self._timeout(what, self.timeout)
        finally:
            self._streams.pop(request_id, None)
            self._pending.pop(request_id, None)
            if not finished and not exchange.done():
                exchange.cancel()
                if self._link.state.connected:
                    with contextlib.suppress(Exception):
                        await self.notify(protocol.CANCEL, id=request_id)

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

        Raises:
            TypeError: ``data`` is neither a dict nor a list.
        """
        if data is not None and not isinstance(data, (dict, list)):
            raise TypeError("event data is a dict or a list (JSON-RPC params)")
        if ack:
            return await self._ask(protocol.request(event, data, next(self._ids)))
        await self._send_once(protocol.notification(event, data))
        return None

    # -- inbound ---------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            payload = self.codec.decode(raw)
        except DecodeError:
            logger.warning("ignored an undecodable message from %s", self.url)
            return
        for item in protocol.parse_incoming(payload):
            if isinstance(item, protocol.Notification):
                self._notification(item.method, item.params)
                continue
            answer = self._pending.get(item.id) if _our_id(item.id) else None
            if answer is None or answer.done():
                continue
            on_answer = self._on_answer.pop(item.id, None)
            if on_answer is not None:
                try:
                    on_answer(item)
                except Exception:
                    logger.exception("handling the answer to request %r failed", item.id)
            if item.error is not None:
                answer.set_exception(
                    CallError(item.error.code, item.error.message, item.error.data)
                )
            else:
                answer.set_result(item.result)

    def _notification(self, method: str, params: Any) -> None:
        if self.on_notification is not None:
            try:
                self.on_notification(method, params)
            except Exception:
                logger.exception("notification callback failed")
        if not isinstance(params, dict):
            return
        if method == protocol.STREAM:
            request_id = params.get("id")
            queue = self._streams.get(request_id) if _our_id(request_id) else None
            if queue is not None:
                queue.put_nowait(params.get("item"))
        elif method == protocol.MESSAGE:
            channel = params.get("channel")
            if not isinstance(channel, str):
                return
            position = protocol.read_position(params)
            message = ChannelMessage(channel, params.get("data"), *(position or ()))
            for pattern, subs in self._subscriptions.items():
                if pattern == channel or matches(pattern, channel):
                    for sub in subs:
                        sub.deliver(message)
        elif method == protocol.PRESENCE_DIFF:
            self._presence_diff(params)
        elif method == protocol.REFRESH_DUE:
            if self._credentials is not None:
                self._tasks.spawn(self._refresh_due(self._link.state.generation))
            else:
                logger.warning("%s asks for a credential refresh; no credentials", self.url)
        elif method == protocol.EVENT:
            # Only the server's own (from null): no connection's event can pass for it.
            if params.get("event") == protocol.CLOSING_EVENT and params.get("from") is None:
                self._closing(params.get("data"))
            for callback in tuple(self._handlers.get(str(params.get("event")), ())):
                try:
                    result = callback(params.get("data"), params.get("from"))
                    if inspect.isawaitable(result):
                        self._tasks.spawn(result)
                except Exception:
                    logger.exception("handler of event %r failed", params.get("event"))

    def _closing(self, data: Any) -> None:
        """The server's ``rpc.close`` event: why it is about to close this connection."""
        code = data.get("code") if isinstance(data, dict) else None
        if isinstance(code, int) and not isinstance(code, bool):
            self.close_reason = self._server_close = (code, str(data.get("reason", "")))
            logger.info("%s closes the connection: %s %s", self.url, *self.close_reason)

    def _fail_pending(self, exc: Exception) -> None:
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(exc)


def _params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | dict[str, Any] | None:
    """JSON-RPC params from Python arguments: positional or named, never both.

    Raises:
        TypeError: both were given.
    """
    if args and kwargs:
        raise TypeError("JSON-RPC takes positional or named parameters, not both")
    if args:
        return list(args)
    return kwargs or None


def _our_id(value: Any) -> TypeGuard[int]:
    """Whether ``value`` may be one of this client's request ids (ints; anything else,
    even unhashable, is an answer to nobody here)."""
    return isinstance(value, int) and not isinstance(value, bool)
