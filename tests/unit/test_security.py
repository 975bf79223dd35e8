"""Origins, connection limits, rate limits and settings: pure logic, with properties."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gobstopper import Config, ConfigError
from gobstopper.routing import compile_path
from gobstopper.security import ConnectionLimiter, OriginPolicy, RateLimiter

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
hosts = st.lists(labels, min_size=1, max_size=4).map(".".join)
schemes = st.sampled_from(["http", "https"])


def test_origin_policy_examples() -> None:
    policy = OriginPolicy(["https://app.example.com", "*.example.org", "https://*.corp.net:8443"])
    assert policy.allows("https://app.example.com", "ws.example.com")
    assert policy.allows("https://app.example.com:443", None)  # the default port
    assert policy.allows("http://a.b.example.org", None)
    assert policy.allows("https://x.corp.net:8443", None)
    assert not policy.allows("https://x.corp.net", None)  # another port
    assert not policy.allows("https://example.org", None)  # the suffix alone is not a match
    assert not policy.allows("https://evilexample.org", None)
    assert not policy.allows("http://app.example.com", None)  # another scheme
    assert not policy.allows("null", None) and not policy.allows("garbage", None)
    assert policy.allows(None, None)  # not a browser


def test_same_host_policy() -> None:
    policy = OriginPolicy()
    assert policy.allows("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert policy.allows("https://chat.example.com", "chat.example.com")
    assert not policy.allows("https://evil.com", "chat.example.com")
    assert not policy.allows("http://127.0.0.1:9000", "127.0.0.1:8000")
    assert not policy.allows("https://chat.example.com", None)


@pytest.mark.parametrize(
    "bad", ["example.com", "https://*", "https://a.*.com", "*.", "ftp://x:99999"]
)
def test_bad_origin_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        OriginPolicy([bad])


@given(scheme=schemes, host=hosts, other=hosts)
def test_listed_origins_pass_and_others_do_not(scheme: str, host: str, other: str) -> None:
    policy = OriginPolicy([f"{scheme}://{host}"])
    assert policy.allows(f"{scheme}://{host}", None)
    assert policy.allows(f"{scheme}://{host.upper()}", None)  # hosts are case-insensitive
    assert policy.allows(f"{scheme}://{other}", None) == (other == host)


@given(scheme=schemes, sub=hosts, domain=hosts, other=hosts)
def test_patterns_match_subdomains_only(scheme: str, sub: str, domain: str, other: str) -> None:
    policy = OriginPolicy([f"*.{domain}"])
    assert policy.allows(f"{scheme}://{sub}.{domain}", None)
    assert not policy.allows(f"{scheme}://{domain}", None)
    if not other.endswith("." + domain):
        assert not policy.allows(f"{scheme}://{other}", None)


@settings(max_examples=200)
@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    burst=st.integers(min_value=1, max_value=100),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_rate_limiter_never_allows_more_than_burst_plus_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = RateLimiter(rate, burst)
    now = start = 1000.0
    bucket._last = start  # a fresh bucket at a known time
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += bucket.allow(now)
    assert allowed <= burst + rate * (now - start) + 1e-6
    # And it does allow a full burst at once.
    fresh = RateLimiter(rate, burst)
    assert all(fresh.allow(fresh._last) for _ in range(burst))


def test_connection_limiter_counts_and_releases() -> None:
    limiter = ConnectionLimiter(max_total=3, max_per_ip=2)
    assert limiter.acquire("1.1.1.1") is None
    assert limiter.acquire("1.1.1.1") is None
    assert limiter.acquire("1.1.1.1") == "too many connections from this address"
    assert limiter.acquire("2.2.2.2") is None
    assert limiter.acquire("3.3.3.3") == "too many connections"
    limiter.release("1.1.1.1")
    assert limiter.acquire("3.3.3.3") is None
    for ip in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        limiter.release(ip)
    assert limiter.total == 0 and limiter.per_ip == {}


_INT_SETTINGS = [
    "MAX_WS_MESSAGE_BYTES",
    "WS_RECEIVE_QUEUE_MESSAGES",
    "WS_SEND_QUEUE_MESSAGES",
    "WS_MAX_CONNECTIONS",
    "WS_MAX_CONNECTIONS_PER_IP",
]


@settings(max_examples=300)
@given(name=st.sampled_from(_INT_SETTINGS), raw=st.text(max_size=12))
def test_whole_number_settings_parse_or_name_the_variable(name: str, raw: str) -> None:
    try:
        config = Config.load({name: raw})
    except ConfigError as exc:
        assert name in str(exc) and repr(raw) in str(exc)
        return
    field = {
        "MAX_WS_MESSAGE_BYTES": "max_message_bytes",
        "WS_RECEIVE_QUEUE_MESSAGES": "receive_queue_messages",
        "WS_SEND_QUEUE_MESSAGES": "send_queue_messages",
        "WS_MAX_CONNECTIONS": "max_connections",
        "WS_MAX_CONNECTIONS_PER_IP": "max_connections_per_ip",
    }[name]
    value = getattr(config, field)
    assert isinstance(value, int) and value == int(raw.strip()) and value >= 0


@settings(max_examples=300)
@given(
    name=st.sampled_from(["WS_SEND_TIMEOUT", "WS_IDLE_TIMEOUT", "WS_RATE_LIMIT"]),
    raw=st.text(max_size=12),
)
def test_seconds_settings_parse_or_name_the_variable(name: str, raw: str) -> None:
    try:
        Config.load({name: raw})
    except ConfigError as exc:
        assert name in str(exc) and repr(raw) in str(exc)


@given(segments=st.lists(labels, min_size=1, max_size=5), value=labels)
def test_routes_match_their_own_paths(segments: list[str], value: str) -> None:
    static = "/" + "/".join(segments)
    assert compile_path(static).regex is None
    dynamic = compile_path(static + "/<name>")
    assert dynamic.regex is not None
    match = dynamic.regex.fullmatch(f"{static}/{value}")
    assert match is not None and match.group("name") == value
    assert dynamic.regex.fullmatch(f"{static}/{value}/more") is None


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    json_like.map(json.dumps),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n * 10),  # deep nesting
    st.integers(min_value=4400, max_value=20000).map(lambda n: "9" * n),  # huge numbers
)


@settings(max_examples=200, deadline=None)
@given(payload=payloads)
async def test_receive_json_gives_a_value_or_a_clear_error_and_stays_open(
    payload: str | bytes,
) -> None:
    from gobstopper.transport.base import BYTES, TEXT

    from .fake_transport import make

    ws, transport = make()
    await ws.accept()
    transport.push(BYTES if isinstance(payload, bytes) else TEXT, payload)
    transport.push(TEXT, '{"after": true}')
    # Malformed: ValueError for that client, and the connection is still open.
    with contextlib.suppress(ValueError):
        await ws.receive_json()
    assert await ws.receive_json() == {"after": True}
    assert not ws.closed


async def test_a_slow_rate_limit_gets_a_usable_default_burst() -> None:
    from .fake_transport import make

    ws, _ = make(rate_limit=0.4)  # a burst of twice the rate would be under one message
    await ws.accept()
    assert ws._rate is not None and ws._rate.burst >= 1


def test_without_a_per_address_limit_only_the_total_is_counted() -> None:
    limiter = ConnectionLimiter(max_total=2)
    assert limiter.acquire(None) is None and limiter.acquire(None) is None
    assert limiter.acquire(None) == "too many connections"
    assert limiter.total == 2 and limiter.per_ip == {}
    limiter.release(None)
    limiter.release(None)
    assert limiter.total == 0
