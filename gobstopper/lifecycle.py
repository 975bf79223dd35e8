"""The life cycle of one WebSocket connection, as a pure state machine.

No I/O and no asyncio: ``Lifecycle`` holds the state, the close code and reason, who
closed, and whether the close was handed to the reader, and only its transitions change
them. "Closed" is tested one way: ``Lifecycle.closed``.

A connection counts as closed from the moment either side decides it, before the close
frame is out, because the handler must see the code at once. How far the close frame
got is I/O and stays on the connection (``connection.py``): hence no CLOSING state.
"""

from __future__ import annotations

import enum
from typing import Literal

from .errors import IllegalTransition

__all__ = ["IllegalTransition", "Lifecycle", "Side", "WebSocketState"]

#: Who ended a connection: the client (a close frame, or the network) or the server
#: (the handler, a limit, a shutdown).
Side = Literal["client", "server"]


class WebSocketState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class Lifecycle:
    """The life cycle of one connection, as pure state::

        CONNECTING --accept()--> CONNECTED --close()--> CLOSED
             |                                            ^
             +------------------close()-------------------+   (a refusal)

    The first close wins: later ones change nothing. Read the attributes, never assign
    them: only the transitions do.

    Attributes:
        state: the ``WebSocketState``.
        closed: whether ``state`` is CLOSED; the one test for "closed".
        accepted: whether the handshake was accepted (still True once closed).
        code: the close code once closed (an HTTP status for a refusal), else None.
        reason: the close reason, "" when none.
        closed_by: ``"client"`` when the client closed first, otherwise ``"server"``.
        close_handed: whether the close was handed to the reader (it gets it once).
    """

    __slots__ = ("accepted", "close_handed", "closed", "closed_by", "code", "reason", "state")

    def __init__(self) -> None:
        self.state = WebSocketState.CONNECTING
        self.closed = False
        self.accepted = False
        self.code: int | None = None
        self.reason = ""
        self.closed_by: Side = "server"
        self.close_handed = False

    def check_accept(self) -> None:
        """Raise unless ``accept()`` is allowed now.

        Raises:
            IllegalTransition: the connection is already accepted or closed.
        """
        if self.state is not WebSocketState.CONNECTING:
            raise IllegalTransition(f"cannot accept a connection that is {self.state.value}")

    def accept(self) -> None:
        """CONNECTING -> CONNECTED.

        Raises:
            IllegalTransition: the connection is already accepted or closed.
        """
        self.check_accept()
        self.state = WebSocketState.CONNECTED
        self.accepted = True

    def close(self, code: int, reason: str = "", by: Side = "server") -> bool:
        """CONNECTING or CONNECTED -> CLOSED, recording the code, reason and side.

        Returns:
            True if this call closed the connection; False if it was closed already.

        Raises:
            ValueError: ``by`` is neither ``"client"`` nor ``"server"``.
        """
        if by != "client" and by != "server":
            raise ValueError(f"closed by {by!r}: expected 'client' or 'server'")
        if self.closed:
            return False
        self.state = WebSocketState.CLOSED
        self.closed = True
        self.code = code
        self.reason = reason
        self.closed_by = by
        return True

    def hand_close(self) -> bool:
        """Whether the reader is to get the close message now: True the first time only.

        Raises:
            IllegalTransition: the connection is not closed.
        """
        if not self.closed:
            raise IllegalTransition(f"no close to hand over: the connection is {self.state.value}")
        if self.close_handed:
            return False
        self.close_handed = True
        return True

    def __repr__(self) -> str:
        if self.closed:
            return f"<Lifecycle closed {self.code} by the {self.closed_by}>"
        return f"<Lifecycle {self.state.value}>"
