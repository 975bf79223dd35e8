"""A room's presence as one node knows it, and the user-level changes each change makes.

Nothing here does I/O or reads a clock (times are passed in), so the rules are tested
alone: which change is a ``join``, an ``update`` or a ``leave``, and how a replica is
reconciled with what the broker holds without flapping on writes still on their way.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import Any

from . import Meta, PresenceDiff, PresenceState, Record, state_of_records

__all__ = ["Replica", "transitions"]

_NEVER = float("-inf")


def _group(records: Mapping[str, Record]) -> dict[str, list[Meta]]:
    users: dict[str, list[Meta]] = {}
    for conn_id in sorted(records):
        user, meta = records[conn_id]
        if user is not None:
            users.setdefault(user, []).append(Meta(conn_id, meta))
    return users


def _diffs(
    room: str,
    before: Mapping[str, list[Meta]],
    after: Mapping[str, list[Meta]],
    users: Iterable[str],
) -> list[PresenceDiff]:
    """The changes of ``users`` from ``before`` to ``after`` (each user's sorted metas)."""
    found = []
    for user in users:
        old, new = before.get(user, []), after.get(user, [])
        if old == new:
            continue
        if not old:
            found.append(PresenceDiff(room, "join", user, new))
        elif not new:
            found.append(PresenceDiff(room, "leave", user, old))
        else:
            found.append(PresenceDiff(room, "update", user, new))
    return found


def transitions(
    room: str, old: Mapping[str, Record], new: Mapping[str, Record]
) -> list[PresenceDiff]:
    """The user-level changes from members ``old`` to ``new`` (``conn id -> (user,
    meta)``), by user name: ``join`` for a user with no connection before, ``leave`` for
    one with none after, ``update`` for one whose connections or metas differ.
    Connections without a user change nothing here."""
    before, after = _group(old), _group(new)
    return _diffs(room, before, after, sorted(set(before) | set(after)))


class Replica:
    """The members of one room (``conn id -> (user, meta)``), the node each is on, and
    when each last changed.

    Every change returns its ``PresenceDiff`` list. Times are monotonic seconds.

    Args:
        room: the room.
        grace: how long a change made here is trusted over a broker that does not show
            it yet (see ``reconcile``).
        clustered: other nodes write the room too. Alone, the replica is exactly this
            node's members: it keeps no trace of removed connections.
    """

    __slots__ = (
        "_by_user",
        "_missing",
        "_removed",
        "_since",
        "clustered",
        "grace",
        "nodes",
        "records",
        "room",
    )

    def __init__(self, room: str, grace: float = 1.0, clustered: bool = True) -> None:
        self.room = room
        self.grace = grace
        self.clustered = clustered
        self.records: dict[str, Record] = {}
        #: The node of each record, when known ("" when not).
        self.nodes: dict[str, str] = {}
        self._by_user: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._since: dict[str, float] = {}  # when each record last changed here
        # Connections removed here, and when, oldest first (times only grow): a broker
        # read that still has one does not bring it back for a grace.
        self._removed: dict[str, float] = {}
        # Since when each remote record has been missing from the broker's reads.
        self._missing: dict[str, float] = {}

    def metas(self, user: str) -> list[Meta]:
        """``user``'s connections here, sorted by id."""
        conns = self._by_user.get(user, {})
        return [Meta(conn_id, conns[conn_id]) for conn_id in sorted(conns)]

    def state(self) -> PresenceState:
        return state_of_records(self.records)

    def put(self, conn_id: str, record: Record, now: float, node: str = "") -> list[PresenceDiff]:
        """A connection (on ``node``) joined, or changed its user or meta."""
        return self.apply({conn_id: record}, now, {conn_id: node})

    def drop(self, conn_id: str, now: float, node: str = "") -> list[PresenceDiff]:
        """A connection left. With ``node``: only if its record is of that node (a
        connection id used again on another node is that node's now, whatever the
        order the notes of both nodes arrive in)."""
        if node and self.nodes.get(conn_id, node) not in ("", node):
            return []
        return self.apply({conn_id: None}, now)

    def apply(
        self,
        changes: Mapping[str, Record | None],
        now: float,
        nodes: Mapping[str, str] | None = None,
    ) -> list[PresenceDiff]:
        """Put (a record) or drop (None) each connection of ``changes`` (``nodes``: the
        node of the records put, where known)."""
        users: set[str] = set()
        for conn_id, record in changes.items():
            old = self.records.get(conn_id)
            for found in (old, record):
                if found is not None and found[0] is not None:
                    users.add(found[0])
        before = {user: self.metas(user) for user in users}
        for conn_id, record in changes.items():
            self._missing.pop(conn_id, None)
            if record is not None and nodes:
                node = nodes.get(conn_id, "")
                if node or conn_id not in self.nodes:
                    self.nodes[conn_id] = node
            old = self.records.get(conn_id)
            if old == record:
                continue
            if old is not None and old[0] is not None:
                conns = self._by_user[old[0]]
                del conns[conn_id]
                if not conns:
                    del self._by_user[old[0]]
            if record is None:
                self.records.pop(conn_id, None)
                self.nodes.pop(conn_id, None)
                self._since.pop(conn_id, None)
                self._tombstone(conn_id, now)
                continue
            self.records[conn_id] = record
            self.nodes.setdefault(conn_id, "")
            self._since[conn_id] = now
            self._removed.pop(conn_id, None)
            if record[0] is not None:
                self._by_user.setdefault(record[0], {})[conn_id] = record[1]
        after = {user: self.metas(user) for user in users}
        return _diffs(self.room, before, after, sorted(users))

    def _tombstone(self, conn_id: str, now: float) -> None:
        """Remember that ``conn_id`` was removed, and forget the removals older than the
        grace (the oldest come first): what is kept stays bounded by the churn of one
        grace, reconciled or not."""
        removed = self._removed
        while removed:
            oldest = next(iter(removed))
            if now - removed[oldest] < self.grace:
                break
            del removed[oldest]
        if self.clustered:
            removed.pop(conn_id, None)  # to the end: the order is the times'
            removed[conn_id] = now

    def drop_nodes(
        self, dead: Container[str], own: Container[str], now: float
    ) -> list[PresenceDiff]:
        """Remove at once the records of the ``dead`` nodes (their presence expired),
        except this node's own connections (``own``)."""
        gone: dict[str, Record | None] = {
            conn_id: None
            for conn_id, node in self.nodes.items()
            if node and node in dead and conn_id not in own
        }
        return self.apply(gone, now) if gone else []

    def remote_nodes(self) -> set[str]:
        """The nodes the records are known to be on."""
        return {node for node in self.nodes.values() if node}

    def reconcile(
        self,
        found: Mapping[str, Record],
        local: Mapping[str, Record],
        own: Container[str],
        now: float,
        nodes: Mapping[str, str] | None = None,
    ) -> list[PresenceDiff]:
        """Bring the replica to what the broker holds (``found``) and this node knows.

        Args:
            found: the room's members across the cluster, as the broker has them.
            local: this node's members of the room: they are as given, whatever the
                broker says.
            own: this node's connections: the broker's entry of one that is not in
                ``local`` is stale (its removal is on its way) and is not taken.
            now: the time now.
            nodes: the node of each member of ``found``.

        A record that changed here less than a grace ago is kept as it is (the broker
        may not have the write yet), and one removed that recently is not taken back
        from the broker. A record the broker does not have is removed only once the
        reads have missed it for a grace: one read between the two writes of a meta
        change, or before a restarted broker has every node's presence back, is not
        a departure.
        """
        grace = self.grace
        nodes = nodes or {}
        changes: dict[str, Record | None] = {}
        for conn_id, record in local.items():
            if self.records.get(conn_id) != record:
                changes[conn_id] = record
        for conn_id, record in self.records.items():
            if conn_id in local:
                continue
            if conn_id in own:
                changes[conn_id] = None
                continue
            there = found.get(conn_id)
            if there is None:
                missing = self._missing.setdefault(conn_id, now)
                young = now - self._since.get(conn_id, _NEVER) < grace
                if not young and now - missing >= grace:
                    changes[conn_id] = None  # its node stopped, or its removal never came
                continue
            self._missing.pop(conn_id, None)
            if now - self._since.get(conn_id, _NEVER) < grace:
                continue
            if there != record:
                changes[conn_id] = there  # a change whose note never came
            elif nodes.get(conn_id):
                self.nodes[conn_id] = nodes[conn_id]
        for conn_id, record in found.items():
            if conn_id in self.records or conn_id in local or conn_id in own:
                continue
            if now - self._removed.get(conn_id, _NEVER) < grace:
                continue
            changes[conn_id] = record
        for conn_id in list(self._removed):
            if now - self._removed[conn_id] < grace:
                break  # oldest first: the rest are younger
            del self._removed[conn_id]
        return self.apply(changes, now, nodes) if changes else []
