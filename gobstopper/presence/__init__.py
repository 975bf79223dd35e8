"""Presence with users: who is in a room, as users with the metas of their connections.

A connection's presence entry (what it writes under a room's presence key, on every
node) is its id alone, or, when it has a user or a meta, its id, ``\\x1f`` and the JSON
``[user, meta]``, so that a read across the cluster needs nothing but the entries.

This module holds the entries and the values presence is read as (``PresenceState``,
``PresenceDiff``); ``replica.py`` computes the user-level changes of a room without I/O,
and ``tracker.py`` keeps a room's replica current across nodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "SEPARATOR",
    "Event",
    "Meta",
    "PresenceDiff",
    "PresenceState",
    "Record",
    "check_meta",
    "entry",
    "member_id",
    "parse_entry",
    "state_of",
    "state_of_records",
]

#: Between a connection's id and its user and meta in a presence entry (no id holds it).
SEPARATOR = "\x1f"

#: What presence knows of one connection: its user (None: none) and its meta.
Record = tuple["str | None", Mapping[str, Any]]
#: A user-level change: the user's first connection, a change among them, the last gone.
Event = Literal["join", "update", "leave"]


def check_meta(meta: Mapping[str, Any], limit: int) -> bytes:
    """``meta`` as JSON.

    Raises:
        ValueError: not a mapping of JSON-able values, or over ``limit`` bytes.
    """
    if not isinstance(meta, Mapping):
        raise ValueError(f"a presence meta is a mapping, not {type(meta).__name__}")
    try:
        data = json.dumps(dict(meta), separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a presence meta must be JSON-able: {exc}") from None
    if len(data) > limit:
        raise ValueError(
            f"a presence meta of {len(data)} bytes is over GOBSTOPPER_PRESENCE_META_BYTES={limit}"
        )
    return data


def entry(conn_id: str, user: str | None, meta: Mapping[str, Any]) -> str:
    """The presence entry of a connection."""
    if user is None and not meta:
        return conn_id
    data = json.dumps([user, dict(meta)], separators=(",", ":"), ensure_ascii=False)
    return conn_id + SEPARATOR + data


def member_id(found: str) -> str:
    """The connection id of a presence entry."""
    return found.partition(SEPARATOR)[0]


def parse_entry(found: str) -> tuple[str, str | None, dict[str, Any]]:
    """``(connection id, user, meta)`` of a presence entry; a malformed tail (written by
    something else) reads as no user and no meta."""
    conn_id, sep, tail = found.partition(SEPARATOR)
    if not sep:
        return conn_id, None, {}
    try:
        user, meta = json.loads(tail)
    except (ValueError, TypeError):
        return conn_id, None, {}
    if not (user is None or isinstance(user, str)) or not isinstance(meta, dict):
        return conn_id, None, {}
    return conn_id, user, meta


@dataclass(frozen=True, slots=True)
class Meta:
    """One connection of a user: its id and what presence shows of it."""

    conn: str
    meta: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"conn": self.conn, "meta": dict(self.meta)}


def _metas(metas: Iterable[Meta]) -> list[dict[str, Any]]:
    return [m.as_dict() for m in metas]


@dataclass(frozen=True, slots=True)
class PresenceState:
    """Who is in a room.

    Attributes:
        users: each user's connections (``Meta``), sorted by connection id.
        connections: every member, with a user or not.
    """

    users: dict[str, list[Meta]]
    connections: int

    @property
    def unique_users(self) -> int:
        """How many users (a user with several connections counts once)."""
        return len(self.users)

    def as_dict(self, channel: str | None = None) -> dict[str, Any]:
        """The wire shape (``rpc.presence``'s answer), with ``channel`` when given."""
        found: dict[str, Any] = {} if channel is None else {"channel": channel}
        found["users"] = {user: _metas(metas) for user, metas in self.users.items()}
        found["connections"] = self.connections
        found["unique_users"] = self.unique_users
        return found


@dataclass(frozen=True, slots=True)
class PresenceDiff:
    """A user-level change in a room's presence.

    Attributes:
        room: the room.
        event: ``join`` (the user's first connection), ``update`` (a connection came or
            went, or a meta changed, and the user is still there) or ``leave`` (the
            user's last connection went).
        user: the user.
        metas: the user's connections after the change (for ``leave``: before it),
            so that applying a diff is an assignment.
    """

    room: str
    event: Event
    user: str
    metas: list[Meta]

    def as_dict(self, channel: str | None = None) -> dict[str, Any]:
        """The params of ``rpc.presence_diff`` (``channel`` in place of the room)."""
        return {
            "channel": self.room if channel is None else channel,
            "event": self.event,
            "user": self.user,
            "metas": _metas(self.metas),
        }


def state_of_records(records: Mapping[str, Record]) -> PresenceState:
    """The presence of members ``conn id -> (user, meta)``."""
    users: dict[str, list[Meta]] = {}
    for conn_id in sorted(records):
        user, meta = records[conn_id]
        if user is not None:
            users.setdefault(user, []).append(Meta(conn_id, meta))
    return PresenceState(dict(sorted(users.items())), len(records))


def state_of(entries: Iterable[str]) -> PresenceState:
    """The presence of a room from its members' entries (a broker's presence read)."""
    records: dict[str, Record] = {}
    for found in entries:
        conn_id, user, meta = parse_entry(found)
        records[conn_id] = (user, meta)
    return state_of_records(records)
