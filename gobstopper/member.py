"""A WebSocket registered with a manager (``WebSocketManager.connect``): its id, its user
and presence meta, its rooms and its bounded outbox."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .delivery import Payload
from .outbox import Outbox
from .websocket import State, WebSocket

if TYPE_CHECKING:
    from .manager import WebSocketManager

__all__ = ["Connection"]


class Connection:
    """A WebSocket registered with a manager: its id, its rooms and its outbox.

    Attributes:
        user: the user it belongs to (``connect(..., user=...)``), if any.
        binary_pushes: the layer serving this connection wants the binary form of
            pushes (``Push.binary``), e.g. a client that chose msgpack.
    """

    __slots__ = (
        "_manager",
        "_meta",
        "binary_pushes",
        "entry",
        "id",
        "outbox",
        "rooms",
        "user",
        "ws",
    )

    def __init__(self, conn_id: str, ws: WebSocket, manager: WebSocketManager) -> None:
        self.id = conn_id
        self.user: str | None = None
        self._meta: dict[str, Any] = {}
        #: What this connection writes under a room's presence key: its id, or with a
        #: user or a meta, ``presence.entry(id, user, meta)``.
        self.entry = conn_id
        self.ws = ws
        self.rooms: set[str] = set()
        self.binary_pushes = False
        self._manager = manager
        self.outbox = Outbox(ws, manager.config, manager._slow, manager.stats, manager._throttle)

    @property
    def state(self) -> State:
        """The WebSocket's free namespace (``conn.state.user``), seen by predicates."""
        return self.ws.state

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def meta(self) -> Mapping[str, Any]:
        """What presence shows of this connection (``connect(meta=...)``, ``set_meta``)."""
        return MappingProxyType(self._meta)

    async def set_meta(self, meta: Mapping[str, Any]) -> None:
        """Replace this connection's presence meta, on every node (see
        ``WebSocketManager.set_meta``)."""
        await self._manager.set_meta(self, meta)

    async def join(self, room: str) -> None:
        await self._manager.join(self, room)

    async def leave(self, room: str) -> None:
        await self._manager.leave(self, room)

    async def send(self, data: Payload) -> bool:
        """Queue a message for this connection only, in order with broadcasts."""
        payload, size = self._manager.encode(data)
        return self.outbox.put(payload, size)

    def __repr__(self) -> str:
        return f"<Connection {self.id} rooms={sorted(self.rooms)}>"
