"""The Python client's presence views, against a server played by hand
(``client_server.py``): the state of the subscribe answer, diffs applied after it and
ignored before it, reconnections that announce only what changed, and closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gobstopper.client import Client, PresenceChange, PresenceView
from gobstopper.messages import protocol

from .client_server import FakeServer, FakeSocket, answer, connected, message, reconnected

ROOM = "room.lobby"


def metas(*conns: str, **meta: Any) -> list[dict[str, Any]]:
    return [{"conn": conn, "meta": dict(meta)} for conn in conns]


def state(users: dict[str, list[dict[str, Any]]], anonymous: int = 0) -> dict[str, Any]:
    connections = anonymous + sum(len(m) for m in users.values())
    return {"channel": ROOM, "users": users, "connections": connections, "unique_users": len(users)}


def diff(event: str, user: str, user_metas: list[dict[str, Any]], channel: str = ROOM) -> Any:
    params = {"channel": channel, "event": event, "user": user, "metas": user_metas}
    return protocol.notification(protocol.PRESENCE_DIFF, params)


def reply(presence: dict[str, Any] | None) -> dict[str, Any]:
    found: dict[str, Any] = {"channel": ROOM, "subscriptions": 1}
    if presence is not None:
        found["presence"] = presence
    return found


class Seen:
    """Records the callbacks of a view as (event, user, metas)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.changed = asyncio.Event()

    def callbacks(self) -> dict[str, Any]:
        return {f"on_{event}": self._recorder(event) for event in ("join", "update", "leave")}

    def _recorder(self, event: str) -> Any:
        def record(user: str, user_metas: list[dict[str, Any]]) -> None:
            self.events.append((event, user, user_metas))
            self.changed.set()

        return record

    def take(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        events, self.events = self.events, []
        return events


async def viewed(
    client: Client, sock: FakeSocket, presence: dict[str, Any] | None, **kwargs: Any
) -> PresenceView:
    """``client.presence(ROOM)``, its subscribe answered with ``presence``."""
    pending = asyncio.ensure_future(client.presence(ROOM, **kwargs))
    request = await sock.request(protocol.SUBSCRIBE)
    assert request["params"] == {"channel": ROOM}
    sock.push(answer(request, reply(presence)))
    return await asyncio.wait_for(pending, 2)


async def settled(client: Client, sock: FakeSocket) -> None:
    """Every frame pushed on ``sock`` so far has been read (a call answered after them)."""
    call = asyncio.ensure_future(client.call("ping"))
    sock.push(answer(await sock.request("ping"), None))
    await asyncio.wait_for(call, 2)


async def test_the_state_of_the_answer(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    seen = Seen()
    ann, bob = metas("c1", "c2", tab=1), metas("c3")
    view = await viewed(
        client, sock, state({"ann": ann, "bob": bob}, anonymous=2), **seen.callbacks()
    )
    assert view.users == {"ann": ann, "bob": bob}
    assert (view.connections, view.unique_users) == (5, 2)
    assert view.synced and view.channel == ROOM
    # The first state is announced to the callbacks given to presence().
    assert seen.take() == [("join", "ann", ann), ("join", "bob", bob)]
    assert await anext(view) == PresenceChange("join", "ann", ann)


async def test_diffs_are_applied_by_assignment(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    seen = Seen()
    view = await viewed(client, sock, state({"ann": metas("c1")}, anonymous=1))
    view.on_join(seen.callbacks()["on_join"])
    view.on_update(seen.callbacks()["on_update"])
    view.on_leave(seen.callbacks()["on_leave"])
    updated = asyncio.Event()

    async def later(user: str, user_metas: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0)
        updated.set()

    view.on_update(later)  # a coroutine function runs as a task
    sock.push(diff("join", "bob", metas("c2")))
    sock.push(diff("update", "ann", metas("c1", "c4")))
    sock.push(diff("join", "bob", metas("c2")))  # again: nothing changes, nothing announced
    sock.push(diff("update", "other", metas("c9"), channel="room.other"))  # not this view's
    sock.push(diff("leave", "ann", metas("c1", "c4")))
    sock.push(diff("leave", "ann", metas("c1", "c4")))  # gone already
    await settled(client, sock)
    assert seen.take() == [
        ("join", "bob", metas("c2")),
        ("update", "ann", metas("c1", "c4")),
        ("leave", "ann", metas("c1", "c4")),
    ]
    assert view.users == {"bob": metas("c2")}
    assert (view.connections, view.unique_users) == (2, 1)  # bob's, and the anonymous one
    await asyncio.wait_for(updated.wait(), 2)
    changes = [await anext(view) for _ in range(4)]
    assert [(c.event, c.user) for c in changes] == [
        ("join", "ann"),
        ("join", "bob"),
        ("update", "ann"),
        ("leave", "ann"),
    ]


async def test_diffs_before_the_answer_are_ignored(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    seen = Seen()
    pending = asyncio.ensure_future(client.presence(ROOM, **seen.callbacks()))
    request = await sock.request(protocol.SUBSCRIBE)
    # Older than the answer's state (which has ann, and no bob any more): ignored.
    sock.push(diff("join", "bob", metas("c2")), diff("leave", "ann", metas("c1")))
    sock.push(answer(request, reply(state({"ann": metas("c1")}))))
    sock.push(diff("join", "cy", metas("c3")))  # newer: applied
    view = await asyncio.wait_for(pending, 2)
    await settled(client, sock)
    assert view.users == {"ann": metas("c1"), "cy": metas("c3")}
    assert seen.take() == [("join", "ann", metas("c1")), ("join", "cy", metas("c3"))]


async def test_a_reconnection_announces_exactly_what_changed(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    seen = Seen()
    before = {"ann": metas("c1"), "bob": metas("c2"), "dan": metas("c4", away=False)}
    view = await viewed(client, sock, state(before), **seen.callbacks())
    seen.take()
    new, found = await reconnected(client, server, sock, 1)
    assert found[ROOM]["params"] == {"channel": ROOM}
    # Pushed on the new connection before its answer: older than it, ignored.
    new.push(diff("leave", "ann", metas("c1")), diff("join", "zed", metas("c9")))
    after = {"ann": metas("c1"), "dan": metas("c4", away=True), "eve": metas("c5")}
    new.push(answer(found[ROOM], reply(state(after, anonymous=3))))
    new.push(diff("update", "eve", metas("c5", "c6")))  # after it: applied
    new.push(answer(found[protocol.INFO], {"id": "c7"}))
    await asyncio.wait_for(client.ready(2), 2)
    assert seen.take() == [
        ("leave", "bob", metas("c2")),
        ("update", "dan", metas("c4", away=True)),
        ("join", "eve", metas("c5")),
        ("update", "eve", metas("c5", "c6")),
    ]
    assert view.users == after | {"eve": metas("c5", "c6")}
    assert (view.connections, view.unique_users) == (7, 3)
    # The same state once more: nothing to announce.
    third, found = await reconnected(client, server, new, 1)
    third.push(answer(found[ROOM], reply(view.state())))
    third.push(answer(found[protocol.INFO], {"id": "c8"}))
    await asyncio.wait_for(client.ready(3), 2)
    assert seen.take() == []


async def test_diffs_of_a_dropped_connection_until_the_next_answer_are_ignored(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    view = await viewed(client, sock, state({"ann": metas("c1")}))
    sock.drop()
    new = await server.accept()
    found = await new.renewal(1)
    new.push(diff("join", "bob", metas("c2")))  # the renewal is not answered yet
    await settled(client, new)
    assert view.users == {"ann": metas("c1")}
    new.push(answer(found[ROOM], reply(state({"bob": metas("c2")}))))
    new.push(answer(found[protocol.INFO], {"id": "c3"}))
    await asyncio.wait_for(client.ready(2), 2)
    assert view.users == {"bob": metas("c2")}


async def test_close_unsubscribes_and_shares_the_channel(
    client: Client, server: FakeServer
) -> None:
    sock = await connected(client, server)
    plain = await _plain(client, sock)
    # The channel is subscribed already: the view asks for its own answer (the state).
    view = await viewed(client, sock, state({"ann": metas("c1")}))
    # A second view starts from the first one's state, without asking.
    second = await client.presence(ROOM)
    assert second.users == view.users and sock.nothing_sent()
    sock.push(message(ROOM, "hi"), diff("join", "bob", metas("c2")))
    assert (await plain.get(1)).data == "hi"  # messages still go to the subscription
    await settled(client, sock)
    assert view.users == second.users == {"ann": metas("c1"), "bob": metas("c2")}
    async with view:
        pass  # closes it: the others still hold the channel
    await second.close()
    assert [change async for change in second][-1] == PresenceChange("join", "bob", metas("c2"))
    await settled(client, sock)
    assert sock.nothing_sent()
    sock.push(diff("leave", "bob", metas("c2")))
    await settled(client, sock)
    assert "bob" in view.users  # a closed view no longer changes
    # The last subscription goes: the channel is unsubscribed.
    closing = asyncio.ensure_future(plain.close())
    request = await sock.request(protocol.UNSUBSCRIBE)
    assert request["params"] == [ROOM]
    sock.push(answer(request, {"channel": ROOM, "subscriptions": 0}))
    await asyncio.wait_for(closing, 2)


async def test_close_of_the_only_view_unsubscribes(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    view = await viewed(client, sock, state({}))
    closing = asyncio.ensure_future(view.close())
    request = await sock.request(protocol.UNSUBSCRIBE)
    assert request["params"] == [ROOM]
    sock.push(answer(request, {"channel": ROOM, "subscriptions": 0}))
    await asyncio.wait_for(closing, 2)
    assert [change async for change in view] == []
    _, found = await reconnected(client, server, sock, 0)
    assert ROOM not in found


async def test_a_channel_without_presence(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    with pytest.raises(ValueError, match="name"):
        await client.presence("room.*")
    pending = asyncio.ensure_future(client.presence(ROOM))
    request = await sock.request(protocol.SUBSCRIBE)
    sock.push(answer(request, reply(None)))
    unsubscribe = await sock.request(protocol.UNSUBSCRIBE)
    assert unsubscribe["params"] == [ROOM]
    sock.push(answer(unsubscribe, {"channel": ROOM, "subscriptions": 0}))
    with pytest.raises(ValueError, match="does not track presence"):
        await asyncio.wait_for(pending, 2)
    _, found = await reconnected(client, server, sock, 0)
    assert ROOM not in found


async def test_callback_failures_are_logged(
    client: Client, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    sock = await connected(client, server)
    seen = Seen()

    def broken(user: str, user_metas: list[dict[str, Any]]) -> None:
        raise RuntimeError("oops")

    view = await viewed(client, sock, state({}), on_join=broken)
    view.on_join(seen.callbacks()["on_join"])
    sock.push(diff("join", "ann", metas("c1")))
    await asyncio.wait_for(seen.changed.wait(), 2)
    assert seen.take() == [("join", "ann", metas("c1"))]
    assert any("presence callback" in r.getMessage() for r in caplog.records)


async def test_presence_state(client: Client, server: FakeServer) -> None:
    sock = await connected(client, server)
    pending = asyncio.ensure_future(client.presence_state(ROOM))
    request = await sock.request(protocol.PRESENCE)
    assert request["params"] == {"channel": ROOM}
    found = state({"ann": metas("c1")}, anonymous=1)
    sock.push(answer(request, found))
    assert await asyncio.wait_for(pending, 2) == found
    with pytest.raises(ValueError):
        await client.presence_state("room.*")


async def _plain(client: Client, sock: FakeSocket) -> Any:
    pending = asyncio.ensure_future(client.subscribe(ROOM))
    request = await sock.request(protocol.SUBSCRIBE)
    sock.push(answer(request, {"channel": ROOM, "subscriptions": 1}))
    return await asyncio.wait_for(pending, 2)
