"""Presence without sockets: entries, the state's wire shape, the user-level diffing
rules and the replica's reconciliation with the broker."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gobstopper.presence import (
    Meta,
    PresenceDiff,
    PresenceState,
    Record,
    entry,
    parse_entry,
    state_of,
)
from gobstopper.presence.replica import Replica, transitions


def test_entries_carry_user_and_meta_and_read_back() -> None:
    assert entry("c1", None, {}) == "c1"
    found = entry("c2", "ann", {"tab": 1})
    assert parse_entry(found) == ("c2", "ann", {"tab": 1})
    assert parse_entry("c3\x1fnot json") == ("c3", None, {})
    state = state_of([found, "c1", entry("c0", "ann", {"tab": 0}), entry("c9", "bob", {})])
    assert state.connections == 4 and state.unique_users == 2
    assert state.as_dict("room.1") == {
        "channel": "room.1",
        "users": {
            "ann": [{"conn": "c0", "meta": {"tab": 0}}, {"conn": "c2", "meta": {"tab": 1}}],
            "bob": [{"conn": "c9", "meta": {}}],
        },
        "connections": 4,
        "unique_users": 2,
    }


def test_a_second_tab_is_an_update_and_only_the_last_one_leaves() -> None:
    one = {"c1": ("ann", {"tab": 1})}
    two: dict[str, Record] = {**one, "c2": ("ann", {"tab": 2})}
    assert transitions("r", {}, one) == [PresenceDiff("r", "join", "ann", [Meta("c1", {"tab": 1})])]
    [update] = transitions("r", one, two)
    assert update.event == "update" and [m.conn for m in update.metas] == ["c1", "c2"]
    assert [d.event for d in transitions("r", two, {"c2": two["c2"]})] == ["update"]
    [leave] = transitions("r", {"c2": two["c2"]}, {})
    assert (leave.event, leave.metas) == ("leave", [Meta("c2", {"tab": 2})])
    # A connection without a user is counted, never announced.
    assert transitions("r", {}, {"anon": (None, {})}) == []


def test_a_meta_change_is_an_update() -> None:
    replica = Replica("r")
    replica.put("c1", ("ann", {"away": False}), 0.0)
    [diff] = replica.put("c1", ("ann", {"away": True}), 1.0)
    assert (diff.event, diff.metas) == ("update", [Meta("c1", {"away": True})])
    assert replica.put("c1", ("ann", {"away": True}), 2.0) == []  # no change, no diff


changes = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3", "c4"]),
        st.one_of(
            st.none(),
            st.tuples(
                st.sampled_from(["ann", "bob", None]),
                st.fixed_dictionaries({"n": st.integers(0, 2)}),
            ),
        ),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(changes)
def test_diffs_applied_by_assignment_give_the_replicas_users(
    steps: list[tuple[str, Record | None]],
) -> None:
    replica = Replica("r")
    view: dict[str, list[Meta]] = {}  # what a client keeps
    for conn_id, record in steps:
        before = dict(replica.records)
        diffs = replica.apply({conn_id: record}, 0.0)
        assert diffs == transitions("r", before, replica.records)
        for diff in diffs:
            assert (diff.event == "join") == (diff.user not in view)
            if diff.event == "leave":
                assert view.pop(diff.user) == diff.metas
            else:
                view[diff.user] = diff.metas
        assert view == replica.state().users


def _users(replica: Replica) -> dict[str, list[str]]:
    return {u: [m.conn for m in ms] for u, ms in replica.state().users.items()}


def test_reconcile_removes_the_missing_after_the_grace_and_adds_the_unknown() -> None:
    replica = Replica("r")
    replica.put("remote", ("ann", {}), 0.0)
    replica.put("mine", ("bob", {}), 0.0)
    local = {"mine": ("bob", {})}
    # Young: the broker may not have it yet.
    assert replica.reconcile({}, local, {"mine"}, 0.5) == []
    [leave] = replica.reconcile({}, local, {"mine"}, 1.5)
    assert (leave.event, leave.user) == ("leave", "ann")
    # This node's own members stay whatever the broker says.
    assert _users(replica) == {"bob": ["mine"]}
    # Unknown here, in the broker: added.
    [join] = replica.reconcile({"new": ("cat", {"x": 1})}, local, {"mine"}, 2.0)
    assert (join.event, join.user) == ("join", "cat")
    # A change whose note never came: the broker's record wins once it is old.
    [update] = replica.reconcile({"new": ("cat", {"x": 2})}, local, {"mine"}, 3.5)
    assert update.event == "update" and update.metas == [Meta("new", {"x": 2})]


def test_reconcile_does_not_take_back_what_was_just_removed() -> None:
    replica = Replica("r")
    replica.put("remote", ("ann", {}), 0.0)
    replica.drop("remote", 5.0)  # a note said it left; the broker may lag
    assert replica.reconcile({"remote": ("ann", {})}, {}, (), 5.5) == []
    # A stale entry of this node's own connection is never taken either.
    assert replica.reconcile({"gone": ("bob", {})}, {}, {"gone"}, 9.0) == []
    # Long after, the broker is right: it is back.
    [join] = replica.reconcile({"remote": ("ann", {})}, {}, (), 7.0)
    assert join.event == "join"


def test_state_counts_connections_without_users() -> None:
    replica = Replica("r")
    replica.apply({"a": (None, {}), "b": ("ann", {}), "c": ("ann", {"k": 1})}, 0.0)
    state: Any = replica.state()
    assert isinstance(state, PresenceState)
    assert (state.connections, state.unique_users) == (3, 1)


def test_one_read_without_a_connection_is_not_a_departure() -> None:
    replica = Replica("lobby", grace=2.5)
    replica.put("b1", ("bob", {}), now=0.0)  # a remote member, there for a long time
    # A read between the two writes of bob's meta change, or before a restarted broker
    # has bob's node back: missing once is not gone.
    assert replica.reconcile({}, {}, (), now=100.0) == []
    assert replica.reconcile({"b1": ("bob", {})}, {}, (), now=101.0) == []  # seen: cleared
    assert replica.reconcile({}, {}, (), now=102.0) == []
    assert replica.reconcile({}, {}, (), now=104.0) == []  # missing for 2 s only
    [leave] = replica.reconcile({}, {}, (), now=104.5)
    assert (leave.event, leave.user) == ("leave", "bob")


def test_removals_are_remembered_for_a_grace_only_and_not_at_all_alone() -> None:
    clustered = Replica("r", grace=1.0)
    for i in range(500):
        clustered.put(f"c{i}", ("bob", {}), float(i))
        clustered.drop(f"c{i}", float(i))
    assert len(clustered._removed) <= 2  # those of the last second, reconciled or not
    alone = Replica("r", grace=1.0, clustered=False)
    alone.put("c", ("bob", {}), 0.0)
    alone.drop("c", 0.0)
    assert alone._removed == {}


def test_a_drop_from_a_node_that_no_longer_has_the_connection_is_ignored() -> None:
    replica = Replica("r")
    replica.put("ann#1", ("ann", {}), 0.0, node="A")
    # ann#1 reconnected on node B; B's put comes here before A's drop.
    replica.put("ann#1", ("ann", {"device": "phone"}), 1.0, node="B")
    assert replica.drop("ann#1", 1.0, node="A") == []
    assert [m.conn for m in replica.state().users["ann"]] == ["ann#1"]
    [leave] = replica.drop("ann#1", 2.0, node="B")
    assert leave.event == "leave"


def test_the_records_of_dead_nodes_go_at_once() -> None:
    replica = Replica("r")
    found = {"a1": ("ann", {}), "b1": ("bob", {}), "mine": ("cat", {})}
    nodes = {"a1": "A", "b1": "B", "mine": "me"}
    replica.reconcile(found, {"mine": ("cat", {})}, {"mine"}, 0.0, nodes)
    assert replica.remote_nodes() == {"A", "B", "me"}
    [leave] = replica.drop_nodes({"B", "me"}, {"mine"}, 0.5)
    assert (leave.event, leave.user) == ("leave", "bob")
    assert sorted(replica.records) == ["a1", "mine"]
