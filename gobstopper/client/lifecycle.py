"""What a user of the Python client sees of its connection: a status, three hooks and the
words of its errors; the same as the browser client's ``status``, ``onopen``, ``onclose``
and ``onstatus``.

The status is read off the state machine of ``state.py`` and the link's count of failed
attempts since the last open connection::

    idle --connect()--> connecting --ready--> open --drop--> reconnecting --ready--> open
                            |                                     ^
                            +--------- an attempt fails ----------+
    any --close()--> closed

``Lifecycle`` is a part of ``Client`` (a base class of it), like ``Channels``: it turns
each transition into a status, calls the hooks (sync or async; one that raises is
logged and the client goes on) and writes the messages of ``ClientTimeout``.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._util import TaskSet
from ..errors import ClientTimeout, ConnectTimeout
from .link import Link
from .state import Phase

__all__ = ["Disconnect", "Lifecycle", "Status"]

logger = logging.getLogger("gobstopper.client")


class Status(str, enum.Enum):
    """The connection's status as a user sees it (the browser client's ``status``)."""

    IDLE = "idle"  # connect() not called yet
    CONNECTING = "connecting"  # the first attempt, not open yet
    OPEN = "open"  # connected, subscriptions renewed: calls go out at once
    RECONNECTING = "reconnecting"  # a connection dropped or an attempt failed: retrying
    CLOSED = "closed"  # close() was called


@dataclass(frozen=True)
class Disconnect:
    """What ``on_close`` is called with: a connection dropped, or an attempt failed.

    Attributes:
        cause: what happened, in words (``ConnectionRefusedError: ...``, ``the server
            refused the handshake: HTTP 403 Forbidden``, ``the server closed the
            connection with code 1012``, or ``the client closed the connection`` when it
            started over itself, after a renewal the server could not do then).
        code: the WebSocket close code, when the connection closed with one.
        attempt: attempts failed since the last open connection (1 after a drop).
        delay: seconds before the next attempt.
        close_reason: ``(code, reason)`` of the server's ``rpc.close`` event, if it sent
            one before closing this connection (None for a failed attempt).
    """

    cause: str
    code: int | None
    attempt: int
    delay: float
    close_reason: tuple[int, str] | None


#: A hook: a function or a coroutine function.
Hook = Callable[..., Any]


class Lifecycle:
    """The status, the hooks and ``wait_open()`` of a client (see ``Client``)."""

    # Given by Client.
    _link: Link
    _url: str
    timeout: float
    close_reason: tuple[int, str] | None
    _server_close: tuple[int, str] | None  # rpc.close's on the connection that just dropped
    info: Any

    def __init__(
        self,
        on_open: Hook | None = None,
        on_close: Hook | None = None,
        on_status: Hook | None = None,
    ) -> None:
        #: Called with ``rpc.info``'s answer (a dict with the connection's ``id``) each
        #: time the client is open, after a reconnection too.
        self.on_open = on_open
        #: Called with a ``Disconnect`` when a connection drops or an attempt fails (not
        #: on ``close()``).
        self.on_close = on_close
        #: Called with ``(status, close_reason)`` whenever the ``status`` changes;
        #: ``close_reason`` is the ``rpc.close`` of the drop that made it ``reconnecting``,
        #: None otherwise.
        self.on_status = on_status
        self._status = Status.IDLE
        self._hook_tasks = TaskSet(logger, "a life-cycle hook")

    @property
    def status(self) -> Status:
        """``idle``, ``connecting``, ``open``, ``reconnecting`` or ``closed``."""
        return self._status

    @property
    def connected(self) -> bool:
        """Whether the client is open: connected, with its subscriptions renewed."""
        return self._status is Status.OPEN

    @property
    def connections(self) -> int:
        """Connections opened so far (1 after the first, more after reconnections)."""
        return self._link.state.generation

    @property
    def phase(self) -> Phase:
        """Where the state machine stands: idle, connecting, renewing, ready or closed
        (``status`` is what the browser client shows)."""
        return self._link.state.phase

    async def ready(self, connection: int | None = None) -> None:
        """Wait until the client is connected with its subscriptions renewed: on any
        connection, or on its ``connection``-th (2: after the first reconnection).

        Example: ``await client.ready(client.connections + 1)`` after a server restart.

        Raises:
            ConnectionError: the client is closed.
            RuntimeError: ``connect()`` was never called.
        """
        state = self._link.state
        if state.phase is Phase.IDLE:
            raise RuntimeError("connect() first")
        await self._link.wait_for(lambda: state.ready_on(connection) or state.closed)
        if state.closed:
            raise ConnectionError("client closed")

    async def wait_open(self, timeout: float | None = None) -> None:
        """Wait until the client is open (at once if it is).

        Raises:
            ClientTimeout: not open within ``timeout`` seconds (the message says why).
            ConnectionError: the client is closed (or closes meanwhile).
            RuntimeError: ``connect()`` was never called.
        """
        await self.wait_status(Status.OPEN, timeout=timeout)

    async def wait_status(self, *statuses: Status, timeout: float | None = None) -> Status:
        """Wait until the status is one of ``statuses``; return it.

        Raises:
            ClientTimeout: none of them within ``timeout`` seconds.
            ConnectionError: the client is closed, and ``closed`` is not among them.
            RuntimeError: ``connect()`` was never called, and ``idle`` is not among them.
        """
        if self._status is Status.IDLE and Status.IDLE not in statuses:
            raise RuntimeError("connect() first")
        wanted = (*statuses, Status.CLOSED)
        try:
            await asyncio.wait_for(self._link.wait_for(lambda: self._status in wanted), timeout)
        except asyncio.TimeoutError:
            names = " or ".join(s.value for s in statuses)
            raise self._timeout(f"not {names} within {timeout}s", timeout) from None
        if self._status not in statuses:
            raise ConnectionError("client closed")
        return self._status

    # -- from the link ---------------------------------------------------------------

    def _phase_changed(self, phase: Phase) -> None:
        status = self._status_of(phase)
        if status is self._status:
            return
        self._status = status
        # The reason of this drop only, as the browser client does: None for the others.
        reason = self._server_close if status is Status.RECONNECTING else None
        self._hook("on_status", self.on_status, status, reason)
        if status is Status.OPEN:
            self._hook("on_open", self.on_open, self.info)

    def _status_of(self, phase: Phase) -> Status:
        if phase is Phase.IDLE:
            return Status.IDLE
        if phase is Phase.CLOSED:
            return Status.CLOSED
        if phase is Phase.READY:
            return Status.OPEN
        return Status.RECONNECTING if self._link.failures else Status.CONNECTING

    def _disconnected(self, cause: str, code: int | None, delay: float) -> None:
        event = Disconnect(cause, code, self._link.failures, delay, self._server_close)
        self._hook("on_close", self.on_close, event)

    def _hook(self, name: str, hook: Hook | None, *args: Any) -> None:
        """Call a hook; its failure is logged, never raised into the client."""
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                self._hook_tasks.spawn(_logged(name, result))
        except Exception:
            logger.exception("the %s hook of the client of %s failed", name, self._url)

    # -- the words of timeouts ---------------------------------------------------------

    def _timeout(self, what: str, timeout: float | None) -> ClientTimeout:
        """A ``ClientTimeout`` saying ``what`` waited, on which URL, and how the connection
        stood when the wait ended (not open: why)."""
        message = f"{what} ({self._url}){self._down_note()}"
        return ClientTimeout(message, url=self._url, timeout=timeout, status=self._status.value)

    def _down_note(self) -> str:
        if self._status in (Status.OPEN, Status.IDLE):
            return ""
        if self._status is Status.CLOSED:
            return ": the client is closed"
        failures, last = self._link.failures, self._link.last_error
        # The status when the wait ended: it may have been open for part of the wait.
        note = f": when the wait ended the client was {self._status.value}"
        if failures:
            note += (
                f"; {failures} attempt{'s' if failures > 1 else ''} failed, the last with {last}"
            )
        return note

    def _connect_timeout(self) -> ConnectTimeout:
        """No connection within ``timeout``: where, how long, how many attempts, why."""
        failures, last = self._link.failures, self._link.last_error
        message = f"no connection to {self._url} within {self.timeout}s"
        if self._link.state.phase is Phase.RENEWING:
            message += ": connected, but the server did not answer rpc.info and the renewals"
        elif failures:
            message += (
                f": {failures} attempt{'s' if failures > 1 else ''} failed, the last with {last}"
            )
        else:
            message += ": the first attempt did not finish"
        return ConnectTimeout(
            message,
            url=self._url,
            timeout=self.timeout,
            status=self._status.value,
            attempts=failures,
            last_error=last,
        )


async def _logged(name: str, result: Awaitable[Any]) -> None:
    try:
        await result
    except Exception:
        logger.exception("the %s hook of the client failed", name)
