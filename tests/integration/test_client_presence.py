"""The Python client against a real granian (RSGI and ASGI) whose route admits JWTs that
expire and whose ``room.*`` channels track presence: a token for every connection,
refreshes before expiry, the close reason when a refresh is refused or the token expires,
and presence views that follow joins, second tabs and leaves, across a reconnection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from gobstopper.client import Client, PresenceView

from .helpers import wait_until
from .servers import Server, start

APP = "tests.apps.client_presence:app"
SECRET = "a-secret-for-tests-only-32-bytes!"  # the app's
ROOM = "room.lobby"


@pytest.fixture(params=["rsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    # A refresh is due one second before expiry (half the lifetime for shorter tokens).
    started = start(APP, request.param, {"GOBSTOPPER_REFRESH_WINDOW": "1"})
    yield started
    started.stop()


def token(user: str, lifetime: float = 3600, **claims: Any) -> str:
    claims = {"sub": user, "name": user.title(), "exp": int(time.time() + lifetime)} | claims
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Tokens:
    """Credentials that hand out the tokens ``make(n)`` gives for the n-th call."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        given: str = self.make(self.calls)
        return given


def client(server: Server, credentials: Any) -> Client:
    return Client(f"{server.ws}/rpc", timeout=10, backoff=0.05, credentials=credentials)


class Seen:
    """A view's callbacks, recorded as (event, user, number of connections)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def callbacks(self) -> dict[str, Any]:
        def recorder(event: str) -> Any:
            return lambda user, metas: self.events.append((event, user, len(metas)))

        return {f"on_{e}": recorder(e) for e in ("join", "update", "leave")}


def conns(view: PresenceView, user: str) -> list[str]:
    return [m["conn"] for m in view.users.get(user, [])]


async def test_a_view_follows_joins_tabs_and_leaves(server: Server) -> None:
    seen = Seen()
    async with (
        client(server, lambda: token("ann")) as ann,
        client(server, lambda: token("bob")) as bob,
        client(server, lambda: token("bob")) as tab,
    ):
        view = await ann.presence(ROOM, **seen.callbacks())
        assert view.users == {"ann": [{"conn": ann.id, "meta": {"name": "Ann"}}]}
        assert (view.connections, view.unique_users) == (1, 1)
        bobs = await bob.presence(ROOM)
        await wait_until(lambda: "bob" in view.users, what="bob's join")
        assert conns(view, "bob") == [bob.id] and sorted(bobs.users) == ["ann", "bob"]
        # A second tab of bob's is an update, not a join.
        await tab.subscribe(ROOM)
        await wait_until(lambda: len(conns(view, "bob")) == 2, what="bob's second tab")
        assert conns(view, "bob") == sorted([str(bob.id), str(tab.id)])
        assert (view.connections, view.unique_users) == (3, 2)
        assert await ann.presence_state(ROOM) == view.state()
        await tab.close()
        await wait_until(lambda: conns(view, "bob") == [bob.id], what="the tab gone")
        await bobs.close()  # bob's last subscription of the room
        await wait_until(lambda: "bob" not in view.users, what="bob's leave")
        assert seen.events == [
            ("join", "ann", 1),
            ("join", "bob", 1),
            ("update", "bob", 2),
            ("update", "bob", 1),
            ("leave", "bob", 1),
        ]
        # A channel that does not track presence: no view.
        with pytest.raises(ValueError, match="does not track presence"):
            await ann.presence("other.lobby")


async def test_refreshes_keep_the_connection_past_expiry(server: Server) -> None:
    tokens = Tokens(lambda n: token("ann", lifetime=3))
    async with client(server, tokens) as ann:
        first_expiry = time.time() + 3
        # Each refresh is due a second before the last token expires: a third call means
        # a refreshed connection outlived the first token.
        await wait_until(lambda: tokens.calls >= 3, timeout=15, what="two refreshes")
        assert time.time() > first_expiry - 1
        assert ann.connections == 1 and ann.close_reason is None
        answer = await ann.refresh()
        assert answer["user"] == "ann" and answer["expires_at"] > first_expiry


async def test_a_refused_refresh_closes_with_its_reason_and_the_view_carries_on(
    server: Server,
) -> None:
    # The second token is another user's: refused, closed with 4003; the third is fine.
    tokens = Tokens(lambda n: token("mallory" if n == 2 else "ann", lifetime=3 if n == 1 else 60))
    closes: list[Any] = []
    seen = Seen()
    async with client(server, lambda: token("bob")) as bob, client(server, tokens) as ann:
        ann.on("rpc.close", lambda data, sender: closes.append((data, sender)))
        await bob.subscribe(ROOM)
        view = await ann.presence(ROOM, **seen.callbacks())
        first = ann.id
        await asyncio.wait_for(ann.ready(2), 15)
        assert ann.close_reason == (4003, "refresh for another user")
        assert closes == [({"code": 4003, "reason": "refresh for another user"}, None)]
        assert tokens.calls == 3
        await wait_until(lambda: conns(view, "ann") == [ann.id], what="ann's new connection")
        assert ann.id != first
        # bob stayed: he joined once, and never left; ann's own connection changed.
        assert [e for e in seen.events if e[1] == "bob"] == [("join", "bob", 1)]
        assert seen.events[-1] == ("update", "ann", 1)


async def test_an_expired_token_closes_with_its_reason_and_a_new_one_reconnects(
    server: Server,
) -> None:
    def make(n: int) -> str:
        if n == 2:
            raise OSError("the token service is down")  # the refresh fails
        return token("ann", lifetime=3 if n == 1 else 60)

    tokens = Tokens(make)
    async with client(server, tokens) as ann:
        await asyncio.wait_for(ann.ready(2), 15)
        assert ann.close_reason == (4001, "credential expired")
        assert tokens.calls == 3
        assert await ann.presence_state(ROOM) == {
            "channel": ROOM,
            "users": {},
            "connections": 0,
            "unique_users": 0,
        }
