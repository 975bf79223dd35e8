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
    policy = OriginPolicy(
        ["https://app.example.com", "https://*.example.org", "https://*.corp.net:8443"]
    )
    assert policy.allows("https://app.example.com", "ws.example.com")
    assert policy.allows("https://app.example.com:443", None)  # the default port
    assert policy.allows("HTTPS://App.Example.COM", None)  # scheme and host in any case
    assert policy.allows("https://a.b.example.org", None)
    assert policy.allows("https://x.corp.net:8443", None)
    assert not policy.allows("https://x.corp.net", None)  # another port
    assert not policy.allows("https://example.org", None)  # the suffix alone is not a match
    assert not policy.allows("https://evilexample.org", None)
    assert not policy.allows("http://app.example.com", None)  # another scheme
    assert not policy.allows("http://a.example.org", None)  # the pattern's scheme only
    assert not policy.allows("https://a.example.org:8443", None)  # its port only
    assert not policy.allows("null", None) and not policy.allows("garbage", None)
    assert policy.allows(None, None)  # not a browser


ATTACKS = [
    "https://evil.net\\@app.example.com",  # a backslash: hosts differ between parsers
    "https://evil.net@app.example.com",  # userinfo
    "https://user:pw@app.example.com",
    "https://app.example.com@evil.net",
    "https://app.example.com/",  # a path
    "https://app.example.com/x",
    "https://app.example.com?x",  # a query
    "https://app.example.com#x",  # a fragment
    " https://app.example.com",  # whitespace
    "https://app.example.com ",
    "https://app.example.com\n",
    "https://app.example.com\t",
    "https://app.example.com:",  # an empty port
    "https://app.example.com:+443",
    "https://app.example.com:0",
    "https://app.example.com:65536",
    "https://app.example.com:443:443",
    "https://app.example.com.",  # a trailing dot
    "https://app..example.com",
    "https:app.example.com",
    "//app.example.com",
    "https://[::1",  # IPv6 without its closing bracket
    "https://[nothex]",
    "https://::1",  # IPv6 without brackets
    "https://app.example.com%2f",
]


@pytest.mark.parametrize("origin", ATTACKS)
def test_malformed_origins_are_refused(origin: str) -> None:
    assert not OriginPolicy(["https://app.example.com", "https://[::1]"]).allows(origin, None)
    assert not OriginPolicy().allows(origin, "app.example.com", "wss")
    assert OriginPolicy(["*"]).allows(origin, None)  # `*`: anything, as documented


def test_ipv6_origins() -> None:
    policy = OriginPolicy(["http://[::1]:8000"])
    assert policy.allows("http://[::1]:8000", None)
    assert policy.allows("http://[0:0::1]:8000", None) is False  # compared as written
    assert OriginPolicy().allows("http://[::1]:8000", "[::1]:8000", "ws")
    assert not OriginPolicy().allows("http://[::1]:8000", "[::2]:8000", "ws")


def test_same_host_policy() -> None:
    policy = OriginPolicy()
    assert policy.allows("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert policy.allows("https://chat.example.com", "chat.example.com")
    assert not policy.allows("https://evil.com", "chat.example.com")
    assert not policy.allows("http://127.0.0.1:9000", "127.0.0.1:8000")
    assert not policy.allows("https://chat.example.com", None)
    assert not policy.allows("https://chat.example.com", "chat.example.com@evil.net")


def test_same_host_compares_the_connections_scheme() -> None:
    policy = OriginPolicy()
    assert policy.allows("http://127.0.0.1:8000", "127.0.0.1:8000", "ws")
    assert not policy.allows("https://127.0.0.1:8000", "127.0.0.1:8000", "ws")
    assert not policy.allows("https://127.0.0.1", "127.0.0.1", "ws")  # and 443 is not 80
    assert policy.allows("https://chat.example.com", "chat.example.com", "wss")
    assert policy.allows("https://chat.example.com", "chat.example.com:443", "wss")
    assert not policy.allows("http://chat.example.com", "chat.example.com", "wss")
    assert policy.allows("https://chat.example.com", "chat.example.com", "https")  # a proxy's
    assert not policy.allows("https://chat.example.com", "chat.example.com", "gopher")
    # Inherent to a same-host rule: a rebound name's page is the same host. Allow-lists
    # are the defence.
    assert policy.allows("http://evil.example:8000", "evil.example:8000", "ws")


@pytest.mark.parametrize(
    "bad",
    [
        "example.com",
        "*.example.org",  # a pattern needs its scheme
        "https://*",
        "https://a.*.com",
        "*.",
        "ftp://x:99999",
        "https://app.example.com/",
        "https://user@app.example.com",
        "https://evil.net\\@app.example.com",
        "https://*.[::1]",
        "https://*.example.org/",
    ],
)
def test_bad_origin_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        OriginPolicy([bad])


def test_bad_allow_list_entries_fail_at_start_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"WS_ALLOWED_ORIGINS=.*\*\.example\.org.*scheme"):
        Config.load({"WS_ALLOWED_ORIGINS": "https://a.example, *.example.org"})


@given(scheme=schemes, host=hosts, other=hosts)
def test_listed_origins_pass_and_others_do_not(scheme: str, host: str, other: str) -> None:
    policy = OriginPolicy([f"{scheme}://{host}"])
    assert policy.allows(f"{scheme}://{host}", None)
    assert policy.allows(f"{scheme}://{host.upper()}", None)  # hosts are case-insensitive
    assert policy.allows(f"{scheme}://{other}", None) == (other == host)


@given(scheme=schemes, sub=hosts, domain=hosts, other=hosts)
def test_patterns_match_subdomains_only(scheme: str, sub: str, domain: str, other: str) -> None:
    policy = OriginPolicy([f"{scheme}://*.{domain}"])
    assert policy.allows(f"{scheme}://{sub}.{domain}", None)
    assert not policy.allows(f"{scheme}://{domain}", None)
    assert not policy.allows(f"{scheme}://{sub}.{domain}:8080", None)
    if not other.endswith("." + domain):
        assert not policy.allows(f"{scheme}://{other}", None)


@settings(max_examples=300)
@given(before=st.text(max_size=8), after=st.text(max_size=8))
def test_nothing_around_a_listed_origin_passes(before: str, after: str) -> None:
    policy = OriginPolicy(["https://app.example.com", "https://*.example.org"])
    # Exactly: nothing may come before the listed host, only the default port after it.
    assert policy.allows(f"https://{before}app.example.com{after}", None) == (
        before == "" and after in ("", ":443")
    )
    if policy.allows(f"https://{before}a.example.org{after}", None):
        assert after in ("", ":443")  # subdomains may vary, the rest not
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in before)


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
