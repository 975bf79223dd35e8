"""The small values a WebSocket handler meets: a received ``Message``, its
``MessageType``, and ``State``, the application's free namespace.

Not to be confused with ``messages/``, the JSON-RPC layer built on top of WebSockets.
``websocket.py`` re-exports everything here.
"""

from __future__ import annotations

import enum
import json
from types import SimpleNamespace
from typing import Any

from .transport.base import BYTES, CLOSE, TEXT

__all__ = ["Message", "MessageType", "State", "text_size"]


class MessageType(enum.IntEnum):
    """Kind of a received message."""

    CLOSE = CLOSE
    BYTES = BYTES
    TEXT = TEXT


class State(SimpleNamespace):
    """A free namespace for the application (``ws.state.user = ...``)."""


class Message:
    """A received message.

    Attributes:
        type: ``MessageType.TEXT``, ``BYTES`` or ``CLOSE``.
        data: ``str`` for text, ``bytes`` for binary, ``None`` for close.
        code: the close code for a close message, else ``None``.
    """

    __slots__ = ("code", "data", "type")

    def __init__(
        self, type: MessageType, data: str | bytes | None, code: int | None = None
    ) -> None:
        self.type = type
        self.data = data
        self.code = code

    @property
    def text(self) -> str:
        """The text of a text message (``TypeError`` for any other kind)."""
        if not isinstance(self.data, str):
            raise TypeError(f"expected a text message, got {self.type.name.lower()}")
        return self.data

    @property
    def bytes(self) -> bytes:
        """The payload of a binary message (``TypeError`` for any other kind)."""
        if not isinstance(self.data, bytes):
            raise TypeError(f"expected a binary message, got {self.type.name.lower()}")
        return self.data

    def json(self) -> Any:
        """Decode a text or binary message as JSON.

        Raises:
            ValueError: not JSON, not UTF-8, a number over Python's digit limit, or
                nesting too deep to decode (the message is at fault, not the server).
        """
        if self.data is None:
            raise TypeError("a close message has no payload")
        try:
            return json.loads(self.data)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.type, self.data, self.code) == (
            other.type,
            other.data,
            other.code,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.data, self.code))

    def __repr__(self) -> str:
        if self.type is MessageType.CLOSE:
            return f"Message(CLOSE, code={self.code})"
        return f"Message({self.type.name}, {self.data!r:.60})"


def text_size(data: str, limit: int) -> int:
    """Byte size of ``data`` in UTF-8, computed only when it could matter for ``limit``
    (below it, the length in characters stands in: only the comparison counts)."""
    n = len(data)
    if n * 4 <= limit:  # even all 4-byte characters would fit
        return n
    return len(data.encode("utf-8", "surrogatepass"))
