"""Presence with users: who is in a room, as users with the metas of their connections.

A connection's presence entry (what it writes under a room's presence key, on every
node) is its id alone, or, when it has a user or a meta, its id, ``\\x1f`` and the JSON
``[user, meta]``, so that a read across the cluster needs nothing but the entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["SEPARATOR", "check_meta", "entry", "member_id", "parse_entry"]

#: Between a connection's id and its user and meta in a presence entry (no id holds it).
SEPARATOR = "\x1f"


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
