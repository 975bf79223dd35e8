"""Named events: what an ``@rpc.on(...)`` handler gets, and where it may answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..delivery import Delivery
from ..manager import Connection
from ..websocket import State

if TYPE_CHECKING:
    from .rpc import RPC

__all__ = ["Event"]


class Event:
    """A named event a client sent, as its ``@rpc.on(...)`` handler gets it.

    Its helpers send through ``rpc.emit``: an event name starting with ``rpc.`` (the
    protocol's own) raises ``ValueError``, so relaying a name a client chose cannot
    fake the server's ``rpc.close``.

    Attributes:
        name: the event's name.
        data: its data (the request's ``params``), None when it had none.
        conn: the sender's connection (``conn.id``, ``conn.join(room)``).
    """

    __slots__ = ("_rpc", "conn", "data", "name")

    def __init__(self, rpc: RPC, conn: Connection, name: str, data: Any) -> None:
        self._rpc = rpc
        self.conn = conn
        self.name = name
        self.data = data

    @property
    def sender(self) -> str:
        """The sender's connection id."""
        return self.conn.id

    @property
    def state(self) -> State:
        """The sender's connection state (what the auth hook or methods set)."""
        return self.conn.ws.state

    async def reply(self, event: str, data: Any = None) -> Delivery:
        """Send ``event`` to the sender only."""
        return await self._rpc.emit(event, data, to=self.conn.id, sender=self.conn.id)

    async def to_room(self, room: str, event: str, data: Any = None) -> Delivery:
        """Send ``event`` to every member of ``room`` (the sender too, if a member)."""
        return await self._rpc.emit(event, data, room=room, sender=self.conn.id)

    async def to_all(self, event: str, data: Any = None) -> Delivery:
        """Send ``event`` to every connection of this endpoint, the sender included."""
        return await self._rpc.emit(event, data, sender=self.conn.id)

    async def to_others(self, event: str, data: Any = None, *, room: str | None = None) -> Delivery:
        """Send ``event`` to everyone (or ``room``'s members) but the sender."""
        return await self._rpc.emit(
            event, data, room=room, exclude=self.conn.id, sender=self.conn.id
        )

    async def to(self, conn_id: str, event: str, data: Any = None) -> Delivery:
        """Send ``event`` to one connection by id, on whichever node it is."""
        return await self._rpc.emit(event, data, to=conn_id, sender=self.conn.id)

    def __repr__(self) -> str:
        return f"<Event {self.name!r} from {self.conn.id}>"
