"""Credentials without sockets: ``credential()``, the auth hooks at admission, the expiry
timer, ``refresh()`` and ``jwt_auth`` (HS256, RS256, audience, issuer, leeway)."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gobstopper import Config, HTTPError, Identity, WebSocket, auth, credential, jwt_auth
from gobstopper._util import Throttle
from gobstopper.admission import Admission
from gobstopper.auth import RefreshRefused, refresh, run_hooks
from gobstopper.metrics import Metrics
from gobstopper.transport.base import ScopeInfo

from .fake_transport import FakeTransport

SECRET = "a unit-test secret, long enough for HS256"
WAIT = 2.0


def websocket(query: str = "", headers: list[tuple[str, str]] | None = None) -> WebSocket:
    info = ScopeInfo("fake", "/ws", query, headers or [], "127.0.0.1:1", "ws")
    return WebSocket(FakeTransport(), info, Config.load({}))


def transport(ws: WebSocket) -> FakeTransport:
    return ws._transport  # type: ignore[return-value]


def hs256(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key)


# -- credential() ----------------------------------------------------------------------


def test_the_credential_is_the_bearer_token_else_the_query_parameter() -> None:
    assert credential(websocket(headers=[("authorization", "Bearer abc")])) == "abc"
    assert credential(websocket(headers=[("authorization", "bearer  abc ")])) == "abc"
    both = websocket("token=from-query", [("authorization", "Bearer from-header")])
    assert credential(both) == "from-header"
    assert credential(websocket("token=xyz")) == "xyz"
    basic = websocket("token=xyz", [("authorization", "Basic dXNlcjpwdw==")])
    assert credential(basic) == "xyz"  # not a bearer token: the query parameter
    assert credential(websocket()) is None
    assert credential(websocket("token=")) is None
    assert credential(websocket(headers=[("authorization", "Bearer ")])) is None


@pytest.mark.parametrize("expires_at", [math.inf, -math.inf, math.nan])
def test_an_identity_expires_at_a_finite_time(expires_at: float) -> None:
    # inf would never expire; NaN compares false with every time, so it would not either.
    with pytest.raises(ValueError, match="finite"):
        Identity("ann", expires_at=expires_at)


# -- the hooks at admission ------------------------------------------------------------


def admission(**settings: Any) -> Admission:
    return Admission(Config.load({}, **settings), Metrics())


async def test_run_hooks_keeps_the_last_identity_and_refuses_on_false() -> None:
    ws = websocket()
    ann, bob = Identity("ann"), Identity("bob")
    assert await run_hooks(ws, [lambda ws: ann, lambda ws: True, lambda ws: None]) is ann

    async def later(ws: WebSocket) -> Identity:
        return bob

    assert await run_hooks(ws, [lambda ws: ann, later]) is bob
    with pytest.raises(HTTPError) as info:
        await run_hooks(ws, [lambda ws: ann, lambda ws: False])
    assert info.value.status == 403


async def test_an_identity_is_set_on_the_websocket_with_a_lease() -> None:
    gate = admission()
    gate.hooks.append(lambda ws: True)
    ws = websocket()
    identity = Identity("ann", {"name": "Ann"}, time.time() + 60)
    route_hook = lambda ws: identity  # noqa: E731
    assert await gate.authorise(ws, route_hook)
    assert ws.identity is identity
    assert ws.lease is not None and ws.lease.hooks == (gate.hooks[0], route_hook)


async def test_without_an_identity_there_is_no_lease() -> None:
    gate = admission()
    ws = websocket()
    assert await gate.authorise(ws, lambda ws: True)
    assert ws.identity is None and ws.lease is None


async def test_an_identity_expired_at_the_handshake_is_refused_401() -> None:
    gate = admission()
    ws = websocket()
    assert not await gate.authorise(ws, lambda ws: Identity("ann", expires_at=time.time() - 1))
    assert transport(ws).rejected == 401 and ws.identity is None


async def test_a_refusing_hook_refuses_the_handshake() -> None:
    gate = admission()

    def refuse(ws: WebSocket) -> None:
        raise HTTPError(401, "no token")

    ws = websocket()
    assert not await gate.authorise(ws, refuse)
    assert transport(ws).rejected == 401


# -- the expiry timer -------------------------------------------------------------------


async def admitted(expires_in: float | None, **hooks_meta: Any) -> WebSocket:
    """An accepted connection admitted with an Identity for ann."""
    expires_at = None if expires_in is None else time.time() + expires_in
    gate = admission()
    ws = websocket()
    assert await gate.authorise(ws, lambda ws: Identity("ann", hooks_meta, expires_at))
    await ws.accept()
    return ws


async def test_a_connection_is_closed_4001_at_its_expiry() -> None:
    ws = await admitted(0.05)
    await asyncio.wait_for(transport(ws).closed_event.wait(), WAIT)
    assert transport(ws).closed == (4001, "credential expired")
    assert ws.close_code == 4001


async def test_closing_cancels_the_timer() -> None:
    ws = await admitted(60)
    lease = ws.lease
    assert lease is not None and lease._handle is not None
    await ws.close()
    assert lease._handle is None


async def test_a_watched_lease_says_when_a_refresh_is_due_then_expires() -> None:
    ws = await admitted(0.4)
    assert ws.lease is not None and ws.identity is not None
    events: list[tuple[str, float]] = []
    expired = asyncio.Event()

    def due(expires_at: float, left: float) -> None:
        events.append(("due", left))
        assert expires_at == ws.identity.expires_at  # type: ignore[union-attr]

    def gone() -> None:
        events.append(("expired", time.time()))
        expired.set()

    ws.lease.watch(due, gone)
    await asyncio.wait_for(expired.wait(), WAIT)
    assert [name for name, _ in events] == ["due", "expired"]
    assert 0 < events[0][1] <= 0.21  # half of what was left (less if the timer ran late)
    assert events[1][1] >= ws.identity.expires_at  # type: ignore[operator]
    assert not ws.closed  # the watcher closes, not the lease


async def test_the_refresh_window_bounds_the_lead() -> None:
    gate = admission(refresh_window=0.1)
    ws = websocket()
    assert await gate.authorise(ws, lambda ws: Identity("ann", expires_at=time.time() + 0.5))
    await ws.accept()
    lefts: list[float] = []
    done = asyncio.Event()
    assert ws.lease is not None
    ws.lease.watch(lambda at, left: (lefts.append(left), done.set()), lambda: None)
    await asyncio.wait_for(done.wait(), WAIT)
    assert 0 < lefts[0] <= 0.11  # the window, not half of what was left
    await ws.close()


# -- refresh() ---------------------------------------------------------------------------


async def refreshable(presented: list[str | None]) -> WebSocket:
    """A connection whose hook maps the token it reads to an Identity: ``user:name:secs``
    (``bad`` refuses, ``none`` lets in without an Identity, ``forever`` gives one without
    an expiry, ``boom`` fails). Like many hooks it sets ``ws.state`` first."""

    def hook(ws: WebSocket) -> Any:
        token = credential(ws)
        presented.append(token)
        ws.state.token = token
        if token == "bad":
            raise HTTPError(401, "bad token")
        if token == "none":
            return True
        if token == "forever":
            return Identity("ann", {"name": "Ann"})
        if token == "boom":
            raise KeyError("the session store broke")
        user, name, seconds = (token or "ann:Ann:60").split(":")
        return Identity(user, {"name": name}, time.time() + float(seconds))

    ws = websocket(headers=[("authorization", "Bearer ann:Ann:60")])
    assert await admission().authorise(ws, hook)
    await ws.accept()
    return ws


async def test_refresh_runs_the_hooks_with_the_new_token() -> None:
    presented: list[str | None] = []
    ws = await refreshable(presented)
    before = ws.identity
    identity = await refresh(ws, "ann:Annie:120")
    assert presented == ["ann:Ann:60", "ann:Annie:120"]
    assert ws.identity is identity and identity.meta == {"name": "Annie"}
    assert before is not None and identity.expires_at > before.expires_at  # type: ignore[operator]
    assert credential(ws) == "ann:Ann:60"  # the refresh's token was seen only by the hooks


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [
        ("bad", 4001, "refresh refused"),
        ("none", 4001, "refresh refused"),
        ("ann:Ann:-1", 4001, "refresh refused"),
        ("bob:Bob:60", 4003, "refresh for another user"),
        ("forever", 4001, "refresh refused"),  # an expiring credential stays one
        ("boom", 4001, "refresh refused"),  # a hook that fails refuses
    ],
)
async def test_a_refused_refresh_changes_nothing(token: str, code: int, reason: str) -> None:
    ws = await refreshable([])
    before = ws.identity
    ws.state.role = "user"
    with pytest.raises(RefreshRefused) as info:
        await refresh(ws, token)
    assert (info.value.code, info.value.reason) == (code, reason)
    assert ws.identity is before
    # What the hooks set on ws.state for the refused token is undone.
    assert vars(ws.state) == {"token": "ann:Ann:60", "role": "user"}


async def test_a_failing_hook_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_hook_failures", Throttle(auth.logger))  # none logged yet
    ws = await refreshable([])
    with caplog.at_level(logging.ERROR, "gobstopper"):
        for _ in range(3):
            with pytest.raises(RefreshRefused):
                await refresh(ws, "boom")
    failed = [r for r in caplog.records if "auth hook failed" in r.getMessage()]
    assert len(failed) == 1 and "the session store broke" in failed[0].getMessage()


async def test_no_refresh_once_the_credential_has_expired() -> None:
    ws = await refreshable([])
    assert ws.lease is not None
    ws.lease.expire()  # as its timer does
    with pytest.raises(RefreshRefused) as info:
        await refresh(ws, "ann:Ann:60")
    assert (info.value.code, info.value.reason) == (4001, "credential expired")
    await asyncio.wait_for(transport(ws).closed_event.wait(), WAIT)
    assert transport(ws).closed == (4001, "credential expired")


async def test_a_connection_without_an_identity_cannot_refresh() -> None:
    ws = websocket()
    with pytest.raises(RefreshRefused) as info:
        await refresh(ws, "anything")
    assert info.value.code == 4001


# -- jwt_auth ----------------------------------------------------------------------------


def bearer(token: str) -> WebSocket:
    return websocket(headers=[("authorization", f"Bearer {token}")])


def refusal(hook: Any, token: str | None) -> str:
    ws = websocket() if token is None else bearer(token)
    with pytest.raises(HTTPError) as info:
        hook(ws)
    assert info.value.status == 401
    return info.value.detail


def test_jwt_auth_hs256() -> None:
    hook = jwt_auth(SECRET, meta=lambda claims: {"name": claims["name"]})
    exp = int(time.time()) + 60
    identity = hook(bearer(hs256({"sub": "ann", "name": "Ann", "exp": exp})))
    assert identity == Identity("ann", {"name": "Ann"}, float(exp))


def test_jwt_auth_requires_exp_unless_told_not_to() -> None:
    # A token without exp would be a credential for ever.
    assert "exp" in refusal(jwt_auth(SECRET), hs256({"sub": "ann"}))
    forever = jwt_auth(SECRET, require_exp=False)(bearer(hs256({"sub": "ann"})))
    assert forever == Identity("ann", {}, None)


def test_jwt_auth_reads_exp_as_pyjwt_does() -> None:
    exp = int(time.time()) + 60
    hook = jwt_auth(SECRET, leeway=5)
    for given in (exp, str(exp), exp + 0.75):  # a numeric string, a fraction
        assert hook(bearer(hs256({"sub": "ann", "exp": given}))).expires_at == exp + 5
    assert refusal(hook, hs256({"sub": "ann", "exp": "soon"})).startswith("invalid token")


@pytest.mark.parametrize("algorithms", [["RS256", "HS256"], ["HS256", "none"], ["None"], []])
def test_jwt_auth_refuses_dangerous_algorithm_lists(algorithms: list[str]) -> None:
    with pytest.raises(ValueError):
        jwt_auth(SECRET, algorithms=algorithms)


def test_jwt_auth_a_token_the_key_cannot_check_is_a_401() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_token = jwt.encode(
        {"sub": "ann", "exp": time.time() + 60},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
    )
    assert refusal(jwt_auth(private.public_key(), algorithms=["RS256", "ES256"]), ec_token)
    # A key of the wrong kind for its algorithm: every token is refused, none crashes.
    assert refusal(jwt_auth(private.public_key()), hs256({"sub": "ann", "exp": time.time() + 60}))
    rs_token = jwt.encode({"sub": "ann", "exp": time.time() + 60}, private, algorithm="RS256")
    assert refusal(jwt_auth(SECRET, algorithms=["RS256"]), rs_token)


def test_jwt_auth_refuses_missing_invalid_expired_and_foreign_tokens() -> None:
    hook = jwt_auth(SECRET)
    assert refusal(hook, None) == "no token"
    assert refusal(hook, "garbage").startswith("invalid token")
    assert refusal(hook, hs256({"sub": "ann", "exp": time.time() - 5})) == "token expired"
    exp = time.time() + 60
    wrong_key = hs256({"sub": "ann", "exp": exp}, "another secret, also long enough!!")
    assert refusal(hook, wrong_key).startswith("invalid token")
    assert "'sub'" in refusal(hook, hs256({"user": "ann", "exp": exp}))
    assert "'sub'" in refusal(hook, hs256({"sub": "", "exp": exp}))


def test_jwt_auth_other_user_claim() -> None:
    hook = jwt_auth(SECRET, user_claim="email")
    claims = {"email": "ann@example.com", "exp": time.time() + 60}
    assert hook(bearer(hs256(claims))).user == "ann@example.com"


def test_jwt_auth_audience_and_issuer() -> None:
    hook = jwt_auth(SECRET, audience="chat", issuer="https://id.example.com")
    exp = time.time() + 60
    good = {"sub": "ann", "aud": "chat", "iss": "https://id.example.com", "exp": exp}
    assert hook(bearer(hs256(good))).user == "ann"
    assert refusal(hook, hs256({**good, "aud": "billing"})).startswith("invalid token")
    no_aud = {"sub": "ann", "iss": good["iss"], "exp": exp}
    assert refusal(hook, hs256(no_aud)).startswith("invalid token")
    assert refusal(hook, hs256({**good, "iss": "https://evil.example"})).startswith("invalid")
    several = jwt_auth(SECRET, audience=["chat", "admin"])
    assert several(bearer(hs256({"sub": "ann", "aud": "admin", "exp": exp}))).user == "ann"


def test_jwt_auth_leeway_extends_the_expiry() -> None:
    exp = int(time.time()) - 5
    token = hs256({"sub": "ann", "exp": exp})
    assert refusal(jwt_auth(SECRET), token) == "token expired"
    identity = jwt_auth(SECRET, leeway=30)(bearer(token))
    assert identity.expires_at == exp + 30 and not identity.expired()


def test_jwt_auth_rs256_with_a_pem_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hook = jwt_auth(public_pem, algorithms=["RS256"])
    token = jwt.encode({"sub": "ann", "exp": time.time() + 60}, private, algorithm="RS256")
    assert hook(bearer(token)).user == "ann"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"sub": "ann"}, other, algorithm="RS256")
    assert refusal(hook, forged).startswith("invalid token")
    # Only the algorithms asked for: an HS256 token is refused.
    assert refusal(hook, hs256({"sub": "ann"}, "x" * 40)).startswith("invalid token")


async def test_jwt_auth_checks_a_refresh_token() -> None:
    hook = jwt_auth(SECRET)
    ws = bearer(hs256({"sub": "ann", "exp": time.time() + 60}))
    assert await admission().authorise(ws, hook)
    await ws.accept()
    identity = await refresh(ws, hs256({"sub": "ann", "exp": time.time() + 120}))
    assert identity.expires_at is not None and identity.expires_at > time.time() + 100
    with pytest.raises(RefreshRefused):
        await refresh(ws, hs256({"sub": "ann", "exp": time.time() - 1}))
    await ws.close()


def test_jwt_auth_without_pyjwt_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)  # import jwt now fails
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[jwt\]'"):
        jwt_auth(SECRET)
