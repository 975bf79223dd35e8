"""The one small interface every server adapter implements.

Everything above this package (``WebSocket``, ``Request``, the app) is written once
against these classes; ``rsgi.py`` and ``asgi.py`` are the only modules that know a
server's protocol.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import HTTPError

__all__ = [
    "BYTES",
    "CLOSE",
    "TEXT",
    "HTTPExchange",
    "ScopeInfo",
    "TransportClosed",
    "WebSocketTransport",
    "body_too_large",
]

# Message kinds, numbered as RSGI numbers them so the RSGI adapter maps for free.
CLOSE = 0
BYTES = 1
TEXT = 2


class ScopeInfo:
    """What the server told us about a request or WebSocket handshake.

    The headers stay in the server's form until they are asked for: ``header(name)``
    looks one up without decoding the others, ``headers`` decodes them all once (most
    connections never need them). The adapters subclass it for their server's form.
    """

    __slots__ = (
        "_headers",
        "_raw_headers",
        "_subprotocols",
        "client",
        "interface",
        "method",
        "path",
        "query_string",
        "scheme",
    )

    def __init__(
        self,
        interface: str,  # "rsgi" or "asgi"
        path: str,
        query_string: str,
        headers: Any,  # (name, value) pairs, names in lower case; or the server's form
        client: str | None,  # "host:port"
        scheme: str,
        method: str = "GET",
        subprotocols: list[str] | None = None,
    ) -> None:
        self.interface = interface
        self.path = path
        self.query_string = query_string
        self._raw_headers = headers
        self._headers: list[tuple[str, str]] | None = None
        self.client = client
        self.scheme = scheme
        self.method = method
        self._subprotocols = subprotocols

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, names in lower case, in the order they came."""
        if self._headers is None:
            self._headers = self._decode_headers(self._raw_headers)
            self._raw_headers = None
        return self._headers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        if self._headers is None:
            return self._find_header(self._raw_headers, name)
        for key, value in self._headers:
            if key == name:
                return value
        return None

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client asked for, in its order."""
        if self._subprotocols is None:
            protocols = self.header("sec-websocket-protocol")
            self._subprotocols = [p.strip() for p in protocols.split(",")] if protocols else []
        return self._subprotocols

    def _decode_headers(self, raw: Any) -> list[tuple[str, str]]:
        return list(raw)

    def _find_header(self, raw: Any, name: str) -> str | None:
        for key, value in raw:
            if key == name:
                return str(value)
        return None

    def __repr__(self) -> str:
        return f"<ScopeInfo {self.interface} {self.method} {self.path}>"


class TransportClosed(Exception):
    """Raised by an adapter when the socket is closed; ``code`` as far as it is known."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class WebSocketTransport(abc.ABC):
    """A server's WebSocket, reduced to what gobstopper needs."""

    __slots__ = ()

    #: "rsgi" or "asgi"
    interface: str

    @abc.abstractmethod
    async def accept(self, subprotocol: str | None, headers: Sequence[tuple[str, str]]) -> None:
        """Complete the handshake."""

    @abc.abstractmethod
    async def reject(self, status: int) -> None:
        """Refuse the handshake with an HTTP status (before accept only)."""

    @abc.abstractmethod
    def receive(self) -> Any:
        """Start reading the next message; return a future (``add_done_callback``)."""

    @abc.abstractmethod
    def unpack(self, fut: Any) -> tuple[int, Any]:
        """Turn a finished ``receive()`` future into ``(kind, data)``.

        Raises:
            TransportClosed: the connection is gone (a close is also returned as
                ``(CLOSE, code)`` when the server reports it as a message).
        """

    @abc.abstractmethod
    async def send_text(self, data: str) -> None:
        """Send one text message; return once the server has taken it."""

    @abc.abstractmethod
    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send one binary message; return once the server has taken it."""

    @abc.abstractmethod
    async def close(self, code: int, reason: str) -> None:
        """Close the connection after accept."""

    #: How many started, unfinished sends broadcast delivery may keep per connection.
    send_window: int = 1
    #: How many started sends may share one future that delivery holds: the future of
    #: the group's last send, its finishing (or failing) standing for the whole group's.
    #: Above 1 only for a server whose sends on a connection finish in order and whose
    #: send futures may be dropped unread (nothing warns of an unretrieved exception).
    send_group: int = 1
    #: Whether a pending receive must be cancelled before a close frame can go out.
    cancel_receive_before_close: bool = False
    #: Whether ``close_now`` closes without waiting for anything (the server takes the
    #: close and sends the frame by itself): closing then needs no task and no timer.
    closes_at_once: bool = False
    #: Whether the server notices a departed client by itself (and fails sends to it),
    #: so that gobstopper need not keep a receive pending: it then reads only when the
    #: handler asks (``receive_now``), without a task or a hand-off per message.
    reads_on_demand: bool = False

    async def receive_now(self) -> tuple[int, Any]:
        """Receive the next message directly, for ``reads_on_demand`` transports.

        Returns what ``unpack`` returns. Raises ``TransportClosed`` like it.
        """
        fut = self.receive()
        await fut
        return self.unpack(fut)

    def senders(
        self,
    ) -> tuple[Callable[[str], Any], Callable[[bytes], Any], tuple[type[BaseException], ...]]:
        """The fastest way to start sends: (text starter, bytes starter, the errors they
        raise when the connection is gone). Valid after accept."""
        return self.start_send, self.start_send, (TransportClosed,)

    def close_now(self, code: int, reason: str) -> None:
        """Close after accept without waiting, for ``closes_at_once`` transports."""
        raise NotImplementedError(f"{type(self).__name__} does not close at once")

    def release(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Drop the server's objects once the handler is done (no-op by default)."""

    @abc.abstractmethod
    def start_send(self, data: str | bytes) -> Any:
        """Start sending one message now, without waiting; return its future.

        The sends a connection starts go out in the order they were started. The future
        fails (``TransportClosed`` or the server's own error) if the client has gone.
        """


class HTTPExchange(abc.ABC):
    """A server's HTTP request/response pair."""

    __slots__ = ()

    @abc.abstractmethod
    async def body(self, limit: int | None = None) -> bytes:
        """Read the whole request body.

        Raises:
            HTTPError: 413, the body is over ``limit`` bytes; reading stops there, so
                a client cannot make the server hold more than that.
        """

    @abc.abstractmethod
    async def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Send the whole response."""


def body_too_large(limit: int) -> HTTPError:
    """The error of a request body over ``limit`` bytes (the client gets a 413)."""
    return HTTPError(413, f"the request body is over the limit of {limit} bytes")
