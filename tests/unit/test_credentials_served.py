"""An expiring credential on a connection served by the message layer, on the in-memory
transport: once it has expired, or a refresh was refused, nothing more is served; a
refused refresh leaves no trace in ``ws.state``; a refresh that keeps the expiry is not
asked for again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gobstopper import Config, Identity, WebSocket, credential
from gobstopper.admission import Admission
from gobstopper.messages import RPC
from gobstopper.metrics import Metrics
from gobstopper.transport.base import CLOSE, TEXT, ScopeInfo

from .rpc_peer import RecordingTransport

WAIT = 5.0

rpc = RPC()
calls: list[str] = []


@rpc.method()
async def work(tag: str) -> str:
    calls.append(tag)
    return "done"


@rpc.method(requires=lambda state: getattr(state, "role", None) == "admin")
async def admin_only() -> str:
    calls.append("admin")
    return "admin data"


class Hooks:
    """The app's hook, then the route's: a token is ``user:role:expiry:flag``, where
    expiry is seconds from now or ``@`` and a time; flag ``revoked`` is refused by the
    route's hook, ``slow`` waits for ``release`` first."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def identity(self, ws: WebSocket) -> Any:
        user, role, expiry, flag = (credential(ws) or "").split(":")
        ws.state.role = role  # as docs/auth.md allows: guards read it
        if flag == "slow":
            await self.release.wait()
        at = float(expiry[1:]) if expiry.startswith("@") else time.time() + float(expiry)
        return Identity(user, {}, at)

    @staticmethod
    def not_revoked(ws: WebSocket) -> Any:
        return False if (credential(ws) or "").endswith(":revoked") else None


class Served:
    """The client's side: what it sends, and the frames the server sent it."""

    def __init__(self, ws: WebSocket, transport: RecordingTransport, hooks: Hooks) -> None:
        self.ws = ws
        self.transport = transport
        self.hooks = hooks

    def send(self, message: Any) -> None:
        self.transport.push(TEXT, json.dumps(message))

    def frames(self) -> list[Any]:
        """Everything sent so far, and what waits in a stalled transport, in order."""
        sent = [*self.transport.sent, *(data for data, _ in self.transport.stalled_sends)]
        return [json.loads(frame) for frame in sent]

    def closing_events(self) -> list[Any]:
        return [e["data"] for e in self.pushes("rpc.event") if e["event"] == "rpc.close"]

    def answer(self, rid: Any) -> Any:
        found = [f for f in self.frames() if isinstance(f, dict) and f.get("id") == rid]
        return found[0] if found else None

    async def until(self, predicate: Callable[[], Any], timeout: float = WAIT) -> None:
        """Wait until ``predicate()`` holds, checked after each frame sent and the close."""

        async def wait() -> None:
            while not predicate():
                self.transport.grew.clear()
                await self.transport.grew.wait()

        await asyncio.wait_for(wait(), timeout)

    def pushes(self, method: str) -> list[Any]:
        frames = self.frames()
        return [f["params"] for f in frames if isinstance(f, dict) and f.get("method") == method]


@asynccontextmanager
async def served(token: str) -> AsyncIterator[Served]:
    """``rpc.serve`` on a fake transport, for a connection presenting ``token``."""
    transport = RecordingTransport()
    headers = [("authorization", f"Bearer {token}")]
    info = ScopeInfo("fake", "/rpc", "", headers, "127.0.0.1:1", "ws")
    config = Config.load({})
    ws = WebSocket(transport, info, config)
    hooks = Hooks()
    gate = Admission(config, Metrics())
    gate.hooks.append(hooks.identity)
    assert await gate.authorise(ws, hooks.not_revoked)
    await ws.accept()
    task = asyncio.ensure_future(rpc.serve(ws))
    try:
        yield Served(ws, transport, hooks)
    finally:
        hooks.release.set()
        transport.stalled = False
        transport.release()
        transport.push(CLOSE, 1000)
        await asyncio.wait_for(task, WAIT)


async def test_nothing_is_served_once_the_credential_has_expired() -> None:
    calls.clear()
    async with served("ann:user:0.3:ok") as peer:
        peer.send({"jsonrpc": "2.0", "method": "rpc.subscribe", "params": ["news"], "id": 1})
        await peer.until(lambda: peer.answer(1))
        # A client that does not read: whatever is sent now waits in the transport.
        peer.transport.stalled = True
        await peer.until(peer.closing_events)
        peer.send({"jsonrpc": "2.0", "method": "work", "params": ["late"], "id": 7})
        delivered = await rpc.publish("news", "after the expiry")
        # Closed within a second although nothing it was sent went out.
        await peer.until(lambda: peer.transport.closed, 2.0)
        assert peer.transport.closed == (4001, "credential expired")
        assert calls == [] and peer.answer(7) is None  # dropped, not run
        assert int(delivered) == 0
        assert peer.frames()[-1]["params"]["event"] == "rpc.close"  # the last message


async def test_a_late_timer_serves_nothing_late() -> None:
    calls.clear()
    async with served("ann:user:60:ok") as peer:
        lease, identity = peer.ws.lease, peer.ws.identity
        assert lease is not None and identity is not None
        # The timer has not fired yet (a paused VM), the credential has expired.
        lease.cancel()
        peer.ws.identity = Identity(identity.user, {}, time.time() - 1)
        peer.send({"jsonrpc": "2.0", "method": "work", "params": ["late"], "id": 7})
        await peer.until(lambda: peer.transport.closed)
        assert peer.closing_events() == [{"code": 4001, "reason": "credential expired"}]
        assert calls == [] and peer.answer(7) is None


async def test_a_refresh_that_ends_after_the_expiry_is_refused() -> None:
    async with served("ann:user:0.4:ok") as peer:
        expires_at = peer.ws.identity.expires_at  # type: ignore[union-attr]
        refresh = {"token": "ann:user:60:slow"}
        peer.send({"jsonrpc": "2.0", "method": "rpc.refresh", "params": refresh, "id": 8})
        await peer.until(peer.closing_events)  # it expired while the hook was busy
        peer.hooks.release.set()
        await peer.until(lambda: peer.transport.closed)
        assert peer.transport.closed == (4001, "credential expired")
        answer = peer.answer(8)
        assert answer is None or "error" in answer  # never a success
        assert peer.ws.identity.expires_at == expires_at  # type: ignore[union-attr]


async def test_a_refused_refresh_undoes_the_hooks_state_and_ends_its_batch() -> None:
    calls.clear()
    async with served("ann:user:60:ok") as peer:
        peer.send(
            [
                {
                    "jsonrpc": "2.0",
                    "method": "rpc.refresh",
                    "params": {"token": "ann:admin:60:revoked"},
                    "id": 1,
                },
                {"jsonrpc": "2.0", "method": "admin_only", "id": 2},
                {"jsonrpc": "2.0", "method": "work", "params": ["after"], "id": 3},
            ]
        )
        await peer.until(lambda: peer.transport.closed)
        assert peer.ws.state.role == "user"
        assert calls == []
        answers = peer.frames()[0]
        assert [(a["id"], a["error"]["code"]) for a in answers] == [
            (1, -32005),
            (2, -32005),
            (3, -32005),
        ]
        assert peer.closing_events() == [{"code": 4001, "reason": "refresh refused"}]


async def test_a_refresh_that_keeps_the_expiry_is_not_asked_for_again() -> None:
    expires_at = time.time() + 0.6
    async with served(f"ann:user:@{expires_at}:ok") as peer:
        await peer.until(lambda: peer.pushes("rpc.refresh_due"))
        refresh = {"token": f"ann:user:@{expires_at}:ok"}
        peer.send({"jsonrpc": "2.0", "method": "rpc.refresh", "params": refresh, "id": 2})
        await peer.until(lambda: peer.answer(2))
        assert peer.answer(2)["result"] == {"user": "ann", "expires_at": expires_at}
        # The expiry comes at its time; no second request for a refresh before it.
        await peer.until(peer.closing_events)
        assert time.time() >= expires_at
        assert len(peer.pushes("rpc.refresh_due")) == 1


async def test_an_application_cannot_emit_the_protocols_events() -> None:
    # Relaying a name a client chose must not fake the server's rpc.close.
    for event in ("rpc.close", "rpc.anything"):
        with pytest.raises(ValueError, match="reserved"):
            await rpc.emit(event, {"code": 4001, "reason": "credential expired"})
