"""Expiring credentials against real granian servers (RSGI and ASGI): a JWT admits the
connection, ``rpc.refresh_due`` comes before the expiry, ``rpc.refresh`` keeps it open,
and a connection that does not refresh, or refreshes badly, is told (``rpc.close``) and
closed with 4001 or 4003 (a code ASGI clients see; RSGI ones get the event only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gobstopper.messages.protocol import CLOSING_EVENT, RATE_LIMITED, UNAUTHORIZED
from tests.apps.auth import token

from .helpers import WAIT, wait_until
from .rpc_peer import RpcPeer
from .servers import Server, server_fixture

auth_server = server_fixture(
    "tests.apps.auth:app", "The expiring-credentials app under granian RSGI and ASGI."
)

LIFETIME = 2.0  # seconds: a refresh is due one second before the expiry


@asynccontextmanager
async def rpc_peer(server: Server, credential: str) -> AsyncIterator[RpcPeer]:
    """A raw JSON-RPC peer presenting ``credential`` as a bearer token."""
    headers = {"Authorization": f"Bearer {credential}"}
    async with connect(f"{server.ws}/rpc", additional_headers=headers) as ws:
        yield RpcPeer(ws)


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):
            pass
    return info.value.response.status_code


async def closed(ws: ClientConnection, server: Server, code: int, reason: str) -> None:
    """``ws`` is closed by the server; with ``code`` and ``reason`` where the server
    can send them (ASGI)."""
    await asyncio.wait_for(ws.wait_closed(), WAIT)
    if server.interface == "asgi":
        assert (ws.close_code, ws.close_reason) == (code, reason)


async def told_and_closed(peer: RpcPeer, server: Server, code: int, reason: str) -> None:
    """The ``rpc.close`` event with ``code`` and ``reason`` arrives, then the close."""
    event = await peer.push("rpc.event", CLOSING_EVENT)
    assert event == {"event": CLOSING_EVENT, "data": {"code": code, "reason": reason}, "from": None}
    await closed(peer.ws, server, code, reason)


async def test_a_credential_is_needed_and_must_be_valid(auth_server: Server) -> None:
    url = f"{auth_server.ws}/rpc"
    assert await refused_status(url) == 401
    assert await refused_status(f"{url}?token=garbage") == 401
    assert await refused_status(f"{url}?token={token('ann', -5)}") == 401  # expired
    forged = jwt.encode({"sub": "ann", "exp": time.time() + 60}, "another key " * 4)
    assert await refused_status(f"{url}?token={forged}") == 401
    async with rpc_peer(auth_server, token("ann", 60, name="Ann")) as peer:
        me = await peer.result("whoami")
        assert (me["user"], me["meta"]) == ("ann", {"name": "Ann"})


async def test_a_peer_that_refreshes_stays_connected(auth_server: Server) -> None:
    first = token("ann", LIFETIME)
    async with rpc_peer(auth_server, first) as peer:
        expiries = [(await peer.result("whoami"))["expires_at"]]
        # Refresh on every rpc.refresh_due until three of the credentials have expired.
        while sum(e < time.time() for e in expiries) < 3:
            due = await peer.push("rpc.refresh_due")
            assert due["expires_at"] == expiries[-1]
            assert 0 < due["in"] <= LIFETIME / 2 + 0.1
            answer = await peer.result("rpc.refresh", {"token": token("ann", LIFETIME)})
            assert answer["user"] == "ann" and answer["expires_at"] > expiries[-1]
            expiries.append(answer["expires_at"])
            assert (await peer.result("whoami"))["expires_at"] == expiries[-1]
        assert peer.pushes == []


async def test_a_peer_that_does_not_refresh_is_closed_at_expiry(auth_server: Server) -> None:
    credential = token("ann", LIFETIME)
    # The browser's way: the token as a query parameter.
    async with connect(f"{auth_server.ws}/rpc?token={credential}") as ws:
        peer = RpcPeer(ws)
        expires_at = (await peer.result("whoami"))["expires_at"]
        due = await peer.push("rpc.refresh_due")
        assert due["expires_at"] == expires_at
        await told_and_closed(peer, auth_server, 4001, "credential expired")
        assert time.time() >= expires_at - 0.05  # not before its time


async def test_a_refused_refresh_closes_with_4001(auth_server: Server) -> None:
    async with rpc_peer(auth_server, token("ann", 60)) as peer:
        answer = await peer.call("rpc.refresh", {"token": "garbage"})
        assert answer["error"]["code"] == UNAUTHORIZED, answer
        await told_and_closed(peer, auth_server, 4001, "refresh refused")


async def test_a_refresh_for_another_user_closes_with_4003(auth_server: Server) -> None:
    async with rpc_peer(auth_server, token("ann", 60)) as peer:
        answer = await peer.call("rpc.refresh", {"token": token("bob", 60)})
        assert answer["error"]["code"] == UNAUTHORIZED, answer
        await told_and_closed(peer, auth_server, 4003, "refresh for another user")


async def test_a_refresh_may_change_the_meta(auth_server: Server) -> None:
    async with rpc_peer(auth_server, token("ann", 60, name="Ann")) as peer:
        assert (await peer.result("whoami"))["meta"] == {"name": "Ann"}
        await peer.result("rpc.refresh", {"token": token("ann", 60, name="Annie")})
        assert (await peer.result("whoami"))["meta"] == {"name": "Annie"}


async def test_refreshes_are_rate_limited(auth_server: Server) -> None:
    async with rpc_peer(auth_server, token("ann", 60)) as peer:
        batch = [
            {
                "jsonrpc": "2.0",
                "method": "rpc.refresh",
                "params": {"token": token("ann", 60)},
                "id": i,
            }
            for i in range(6)
        ]
        await peer.send(batch)
        answers = await peer.answer(None)
        limited = [a for a in answers if "error" in a]
        assert limited and all(a["error"]["code"] == RATE_LIMITED for a in limited), answers
        assert (await peer.result("whoami"))["user"] == "ann"  # still open


async def test_a_plain_handler_is_closed_at_expiry(auth_server: Server) -> None:
    headers = {"Authorization": f"Bearer {token('ann', LIFETIME)}"}
    async with connect(f"{auth_server.ws}/plain", additional_headers=headers) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hi"
        started = time.monotonic()
        await closed(ws, auth_server, 4001, "credential expired")
        assert time.monotonic() - started <= LIFETIME + 1


async def test_a_plain_handler_can_refresh(auth_server: Server) -> None:
    first = token("ann", LIFETIME)
    async with connect(f"{auth_server.ws}/plain?token={first}") as ws:
        await ws.send(f"refresh {token('ann', 3 * LIFETIME)}")
        reply = await asyncio.wait_for(ws.recv(), WAIT)
        assert isinstance(reply, str) and reply.startswith("refreshed ")
        expires_at = float(reply.split()[1])
        # Past the first credential's expiry, it is still open.
        first_expiry = jwt.decode(first, options={"verify_signature": False})["exp"]
        await wait_until(lambda: time.time() > first_expiry + 0.2, 2 * LIFETIME)
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "still here"
        await ws.send(f"refresh {token('bob', 60)}")
        await closed(ws, auth_server, 4003, "refresh for another user")
        assert time.time() < expires_at
    with pytest.raises(ConnectionClosed):
        await ws.recv()
