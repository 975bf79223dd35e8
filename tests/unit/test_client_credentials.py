"""The Python client's expiring credentials, against a server played by hand
(``client_server.py``): a token for every connection attempt, refreshes the server asks
for, and the reason the server gives before it closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gobstopper.client import CallError, Client
from gobstopper.messages import protocol

from .client_server import FakeServer, FakeSocket, answer, connected

URL = "ws://fake/rpc"


class Tokens:
    """Hands out token-1, token-2, ... (or raises, for the calls listed in ``fail``)."""

    def __init__(self, *fail: int) -> None:
        self.calls = 0
        self.fail = set(fail)

    def __call__(self) -> str:
        self.calls += 1
        if self.calls in self.fail:
            raise OSError("the token service is down")
        return f"token-{self.calls}"


@pytest.fixture
async def make(server: FakeServer) -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kwargs: Any) -> Client:
        made.append(Client(URL, timeout=2, backoff=0.001, max_backoff=0.002, **kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def reconnect(client: Client, server: FakeServer, sock: FakeSocket) -> FakeSocket:
    sock.drop()
    return await connected(client, server)


async def test_a_fresh_token_for_every_connection(
    make: Callable[..., Client], server: FakeServer
) -> None:
    tokens = Tokens()
    client = make(credentials=tokens)
    sock = await connected(client, server)
    assert sock.headers == bearer("token-1")
    sock = await reconnect(client, server, sock)
    assert sock.headers == bearer("token-2")
    assert tokens.calls == 2


async def test_async_credentials_and_none(make: Callable[..., Client], server: FakeServer) -> None:
    given: list[str | None] = ["async-token", None]

    async def credentials() -> str | None:
        await asyncio.sleep(0)
        return given.pop(0)

    client = make(credentials=credentials)
    sock = await connected(client, server)
    assert sock.headers == bearer("async-token")
    sock = await reconnect(client, server, sock)
    assert sock.headers is None  # None: connect without a credential


async def test_no_credentials_no_header(make: Callable[..., Client], server: FakeServer) -> None:
    sock = await connected(make(), server)
    assert sock.headers is None


async def test_credentials_that_raise_are_retried(
    make: Callable[..., Client], server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = Tokens(1, 2)
    client = make(credentials=tokens)
    sock = await connected(client, server)  # the third call gave a token
    assert sock.headers == bearer("token-3")
    failures = [r for r in caplog.records if "could not be made" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None
    # A wrong type is a failed attempt too, not a header.
    answers: list[Any] = [42, "ok"]
    other = make(credentials=lambda: answers.pop(0))
    assert (await connected(other, server)).headers == bearer("ok")


async def test_refresh_due_presents_a_fresh_token(
    make: Callable[..., Client], server: FakeServer
) -> None:
    client = make(credentials=Tokens())
    sock = await connected(client, server)
    sock.push(protocol.notification(protocol.REFRESH_DUE, {"expires_at": 1e9, "in": 30}))
    request = await sock.request(protocol.REFRESH)
    assert request["params"] == {"token": "token-2"}
    sock.push(answer(request, {"user": "ann", "expires_at": 2e9}))
    # And on demand, with the answer.
    task = asyncio.ensure_future(client.refresh())
    request = await sock.request(protocol.REFRESH)
    assert request["params"] == {"token": "token-3"}
    sock.push(answer(request, {"user": "ann", "expires_at": 3e9}))
    assert await asyncio.wait_for(task, 2) == {"user": "ann", "expires_at": 3e9}


async def test_a_refused_refresh_then_the_close_reason_and_a_new_connection(
    make: Callable[..., Client], server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make(credentials=Tokens())
    seen: list[Any] = []
    client.on(protocol.CLOSING_EVENT, lambda data, sender: seen.append((data, sender)))
    sock = await connected(client, server)
    assert client.close_reason is None
    sock.push(protocol.notification(protocol.REFRESH_DUE, {"expires_at": 1e9, "in": 1}))
    request = await sock.request(protocol.REFRESH)
    refused = protocol.RPCError(protocol.UNAUTHORIZED, "Unauthorized", "refresh refused")
    data = {"code": 4001, "reason": "refresh refused"}
    sock.push(
        protocol.error(request["id"], refused),
        protocol.event_push(protocol.CLOSING_EVENT, data, None),
    )
    sock.drop()
    new = await server.accept()
    assert new.headers == bearer("token-3")  # the next connection, with a new token
    assert client.close_reason == (4001, "refresh refused")
    assert seen == [(data, None)]  # and as any event
    assert any("refreshing the credential" in r.getMessage() for r in caplog.records)


async def test_refresh_without_credentials(make: Callable[..., Client], server: FakeServer) -> None:
    client = make(credentials=lambda: None)
    sock = await connected(client, server)
    with pytest.raises(RuntimeError, match="no token"):
        await client.refresh()
    plain = make()
    await connected(plain, server)
    with pytest.raises(RuntimeError, match="credentials"):
        await plain.refresh()
    assert sock.nothing_sent()


async def test_a_refused_refresh_on_demand_raises(
    make: Callable[..., Client], server: FakeServer
) -> None:
    client = make(credentials=lambda: "expired")
    sock = await connected(client, server)
    task = asyncio.ensure_future(client.refresh())
    request = await sock.request(protocol.REFRESH)
    refused = protocol.RPCError(protocol.UNAUTHORIZED, "Unauthorized", "refresh for another user")
    sock.push(protocol.error(request["id"], refused))
    with pytest.raises(CallError) as info:
        await asyncio.wait_for(task, 2)
    assert info.value.code == protocol.UNAUTHORIZED


async def test_close_reason_of_an_expired_credential_is_kept(
    make: Callable[..., Client], server: FakeServer
) -> None:
    client = make(credentials=Tokens())
    sock = await connected(client, server)
    data = {"code": 4001, "reason": "credential expired"}
    sock.push(protocol.event_push(protocol.CLOSING_EVENT, data, None))
    sock = await reconnect(client, server, sock)
    assert client.close_reason == (4001, "credential expired")  # after reconnecting too
    # A malformed one changes nothing.
    sock.push(protocol.event_push(protocol.CLOSING_EVENT, {"reason": "?"}, None))
    call = asyncio.ensure_future(client.call("ping"))
    sock.push(answer(await sock.request("ping"), "pong"))  # read after the event
    assert await asyncio.wait_for(call, 2) == "pong"
    assert client.close_reason == (4001, "credential expired")


async def test_a_refresh_is_never_sent_on_another_connection(
    make: Callable[..., Client], server: FakeServer
) -> None:
    client = make(credentials=Tokens())
    sock = await connected(client, server)
    sock.closed = True  # gone, and the client has not noticed yet: the send fails
    refresh = asyncio.ensure_future(client.refresh())
    sock.drop()
    new = await connected(client, server)  # its renewal is all it is sent
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(refresh, 2)
    assert new.nothing_sent()  # the token-2 refresh did not follow it there


async def test_a_close_reason_comes_from_the_server_only(
    make: Callable[..., Client], server: FakeServer
) -> None:
    client = make(credentials=Tokens())
    sock = await connected(client, server)
    fake = {"code": 4003, "reason": "refresh for another user"}
    sock.push(protocol.event_push(protocol.CLOSING_EVENT, fake, "another-connection"))
    call = asyncio.ensure_future(client.call("ping"))
    sock.push(answer(await sock.request("ping"), "pong"))  # read after the event
    assert await asyncio.wait_for(call, 2) == "pong"
    assert client.close_reason is None
