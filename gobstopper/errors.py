"""Exceptions and close codes.

The exception tree:

    GobstopperError
    ├── ConfigError              a setting has a bad value (raised at start-up)
    ├── RouteError               a route is malformed or registered twice
    ├── UnsupportedByServer      the running server interface cannot do this
    ├── MessageTooBig            an outbound message exceeds the size limit
    ├── HTTPError                an HTTP handler's way to answer with a status
    ├── BrokerUnavailable        the broker (Redis) cannot be reached now
    ├── IllegalTransition        a life-cycle step its state forbids (also a RuntimeError)
    ├── ClientTimeout            the Python client waited too long (also a TimeoutError)
    │   └── ConnectTimeout           no connection within the timeout; says why
    └── ConnectionClosed         the WebSocket is closed; carries ``code``
        ├── ConnectionClosedOK       closed normally (1000, 1001, 1005)
        └── ConnectionClosedError    closed because of an error (1009, 1011, ...)
"""

from __future__ import annotations

import asyncio
import enum
import sys
from typing import Any

__all__ = [
    "BrokerUnavailable",
    "ClientTimeout",
    "CloseCode",
    "ConfigError",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "GobstopperError",
    "HTTPError",
    "IllegalTransition",
    "MessageTooBig",
    "RouteError",
    "UnsupportedByServer",
    "closed_ok",
]


class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    # Application codes (4000-4999) gobstopper itself sends:
    UNAUTHORIZED = 4001  # the credential expired, or a refresh was refused
    FORBIDDEN = 4003  # a refresh named another user


# Codes that mean "the conversation ended as intended". 1005 is included because
# under RSGI a client's close frame reaches the app without its code.
_OK_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})


def closed_ok(code: int | None) -> bool:
    """Whether ``code`` ends a connection normally (``ConnectionClosedOK``'s codes)."""
    return code in _OK_CODES


class GobstopperError(Exception):
    """Root of every exception gobstopper raises on purpose."""


class ConfigError(GobstopperError, ValueError):
    """A setting (environment variable or constructor argument) has a bad value."""


class RouteError(GobstopperError, ValueError):
    """A route pattern is malformed, or the same route is registered twice."""


class UnsupportedByServer(GobstopperError):
    """The server interface in use (e.g. RSGI) cannot do what was asked."""


class MessageTooBig(GobstopperError):
    """An outbound message is larger than the configured limit; nothing was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class HTTPError(GobstopperError):
    """Raise in an HTTP handler to answer with ``status`` and a plain-text ``detail``.

    Example: ``raise HTTPError(404, "no such room")``.
    """

    def __init__(
        self, status: int, detail: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {detail}".strip())
        self.status = status
        self.detail = detail or str(status)
        self.headers = headers


class ConnectionClosed(GobstopperError):
    """The WebSocket is closed.

    Attributes:
        code: the close code (``CloseCode`` when it is a standard one).
        reason: the close reason, when known.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed with code {code}" + (f": {reason}" if reason else ""))

    @staticmethod
    def for_code(code: int, reason: str = "") -> ConnectionClosed:
        """Build the right subclass for ``code``."""
        if code in _OK_CODES:
            return ConnectionClosedOK(code, reason)
        return ConnectionClosedError(code, reason)


class ConnectionClosedOK(ConnectionClosed):
    """The connection was closed normally (1000, 1001, or 1005 when the code is unknown)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection was closed because of an error (oversized message, crash, ...)."""


class BrokerUnavailable(GobstopperError):
    """The broker cannot take or answer a request now (Redis down, network cut).

    Attributes:
        url: the broker's URL, without its password.
        reason: what went wrong.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"broker {url} unavailable: {reason}")
        self.url = url
        self.reason = reason


class IllegalTransition(GobstopperError, RuntimeError):
    """A life-cycle step that the current state does not allow (accepting a connection
    twice, a client event out of order): a bug in the caller."""


# On Python 3.10 asyncio's TimeoutError is a class of its own (3.11 made it the builtin):
# the client's timeouts are both there, so that ``except asyncio.TimeoutError`` catches them.
if sys.version_info >= (3, 11):
    _Timeout = TimeoutError
else:

    class _Timeout(asyncio.TimeoutError, TimeoutError):
        pass


class ClientTimeout(GobstopperError, _Timeout):
    """The Python client waited longer than its timeout (a call's answer, a
    subscription's next message, a connection). The message names what waited, where,
    and, when the connection was down as the wait ended, that it was (with the last error).

    Attributes:
        url: the route the client connects to.
        timeout: the seconds it waited.
        status: the connection's status when it gave up (``idle``, ``connecting``,
            ``open``, ``reconnecting``, ``closed``).
    """

    def __init__(self, message: str, *, url: str, timeout: float | None, status: str) -> None:
        super().__init__(message)
        self.url = url
        self.timeout = timeout
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only arguments are not in ``args``: pickle (multiprocessing, logging
        # handlers) needs them given back.
        return (_rebuild, (type(self), str(self), self.__dict__.copy()))


class ConnectTimeout(ClientTimeout):
    """No connection to the server within the timeout.

    Attributes:
        attempts: the attempts that failed meanwhile.
        last_error: what the last one failed with (``connection refused``, ``HTTP 403
            Forbidden``, a DNS failure...), or None if none had failed yet.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        timeout: float | None,
        status: str,
        attempts: int,
        last_error: str | None,
    ) -> None:
        super().__init__(message, url=url, timeout=timeout, status=status)
        self.attempts = attempts
        self.last_error = last_error


def _rebuild(cls: type[ClientTimeout], message: str, attributes: dict[str, Any]) -> ClientTimeout:
    """Unpickle a ``ClientTimeout``: its message, then its attributes as they were."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attributes)
    return error
