"""Handing one message to many connections' outboxes: the one delivery loop.

Everything that reaches more than one connection goes through ``deliver``: a room
broadcast, a message from another node, the message layer's channel publications and
events. A ``Push`` is encoded once per form: the frame every connection gets, and a
binary form for connections that take binary pushes (a message-layer client that chose
msgpack), made on first need. ``deliver`` never awaits: each outbox applies its own
bound and slow-consumer policy, so one slow connection never holds up the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import MessageTooBig

if TYPE_CHECKING:
    from .cluster import Published
    from .outbox import DeliveryStats, Outbox

__all__ = [
    "Delivery",
    "Exclude",
    "Payload",
    "Push",
    "Recipient",
    "chosen",
    "connection_ids",
    "deliver",
    "encode",
]

#: What a broadcast takes: str (a text message), bytes-like (binary), or a JSON-able object.
Payload = str | bytes | bytearray | memoryview | Any

logger = logging.getLogger("gobstopper.manager")


class Recipient(Protocol):
    """What ``deliver`` needs of a connection (``manager.Connection`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def binary_pushes(self) -> bool: ...


R = TypeVar("R", bound=Recipient)
#: Who must not get a message: a connection, an id, or several of either.
Exclude = Recipient | str | Iterable[Recipient | str] | None


class Delivery(int):
    """What a broadcast did: an ``int``, the connections of this node it was queued for.

    Attributes:
        published: whether it was handed to the broker for the other nodes (always
            False with no other node to reach).
        error: why it could not be, when it could not (the broker is unreachable): the
            other nodes' members do not get it (delivery is at most once).
    """

    published: bool
    error: str | None

    def __new__(cls, local: int, published: bool = False, error: str | None = None) -> Delivery:
        obj = super().__new__(cls, local)
        obj.published = published
        obj.error = error
        return obj

    @classmethod
    def of(cls, local: int, outcome: Published) -> Delivery:
        """``local`` deliveries, and the outcome of publishing to the other nodes."""
        return cls(local, *outcome)

    def __repr__(self) -> str:
        return f"Delivery(local={int(self)}, published={self.published}, error={self.error!r})"


class Push:
    """One message for many connections, encoded once per form.

    Args:
        data: the frame every connection gets (str: text, bytes: binary).
        size: its size in bytes.
        binary: the form for connections that take binary pushes (``binary_pushes``):
            bytes, or a function making them on first need (returning None when this
            message has no binary form: those connections are skipped). None: the same
            frame for everyone.
    """

    __slots__ = ("_binary", "data", "size")

    def __init__(
        self,
        data: str | bytes,
        size: int,
        binary: bytes | Callable[[], bytes | None] | None = None,
    ) -> None:
        self.data = data
        self.size = size
        self._binary = binary

    def binary(self) -> tuple[str | bytes, int] | None:
        """The frame for a connection that takes binary pushes, and its size."""
        form = self._binary
        if form is None:
            return self.data, self.size
        if callable(form):
            form = self._binary = form() or b""
        return (form, len(form)) if form else None


def deliver(
    members: Iterable[R],
    push: Push,
    exclude: frozenset[str] = frozenset(),
    predicate: Callable[[R], bool] | None = None,
    stats: DeliveryStats | None = None,
) -> int:
    """Queue ``push`` for each of ``members`` not in ``exclude`` and passing ``predicate``;
    return how many it was queued for, counted in ``stats`` (once, not per member)."""
    if exclude or predicate is not None:
        members = [conn for conn in members if chosen(conn, exclude, predicate)]
    data, size = push.data, push.size
    sent = binary = binary_size = 0
    # The loop every broadcast runs once per member: nothing in it but the choice of
    # form and the outbox's own fast path.
    for conn in members:
        if conn.binary_pushes:
            framed = push.binary()
            if framed is not None and conn.outbox.offer(*framed):
                binary += 1
                binary_size = framed[1]
        elif conn.outbox.offer(data, size):
            sent += 1
    if stats is not None:
        stats.queued += sent + binary
        stats.queued_bytes += sent * size + binary * binary_size
    return sent + binary


def chosen(conn: R, exclude: frozenset[str], predicate: Callable[[R], bool] | None) -> bool:
    """Whether a broadcast with ``exclude`` and ``predicate`` is for ``conn``; a predicate
    that raises is logged and counts as no."""
    if exclude and conn.id in exclude:
        return False
    if predicate is None:
        return True
    try:
        return bool(predicate(conn))
    except Exception:
        logger.exception("broadcast predicate failed for %s; skipped", conn.id)
        return False


def encode(data: Payload, limit: int) -> tuple[str | bytes, int]:
    """Encode a payload once: str is text, bytes-like is binary, anything else JSON.

    Raises:
        MessageTooBig: the encoded message is over ``limit`` bytes.
        TypeError: the object cannot be encoded as JSON.
    """
    payload: str | bytes
    if isinstance(data, str):
        payload = data
        size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
        size = len(payload)
    else:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        size = len(payload) if payload.isascii() else len(payload.encode())
    if size > limit:
        raise MessageTooBig(size, limit)
    return payload, size


def connection_ids(exclude: Exclude) -> frozenset[str]:
    """The ids in ``exclude``: a connection, an id, or several of either."""
    if exclude is None:
        return frozenset()
    if isinstance(exclude, str):
        return frozenset((exclude,))
    if isinstance(exclude, Iterable):
        return frozenset(e if isinstance(e, str) else e.id for e in exclude)
    return frozenset((exclude.id,))
