"""Every setting, declared once: read from the constructor or the environment, validated.

Each field of :class:`Config` is declared by ``_setting()`` with its environment variable,
default, parser and a one-line doc. Everything else derives from those declarations:
``Config.load()`` (which reads and validates them), ``SETTINGS`` (the declarations by
name), the ``Attributes`` of ``Config``'s docstring and ``markdown_table()`` (the table in
README.md and docs/configuration.md). ``SettingsArgs`` types the keyword arguments of
``Gobstopper()``; a unit test checks it, and the tables, against the declarations.

A bad value raises :class:`~gobstopper.errors.ConfigError` naming the variable (or the
argument) and the value: there is never a silent fallback to a default.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

from .errors import ConfigError

__all__ = [
    "SETTINGS",
    "Config",
    "RateLimitPolicy",
    "Setting",
    "SettingsArgs",
    "SlowConsumerPolicy",
    "markdown_table",
]

KiB = 1024
MiB = 1024 * KiB

T = TypeVar("T")


class SlowConsumerPolicy(str, enum.Enum):
    """What happens when a connection's outbound queue is full.

    - ``close``: close the connection as a slow consumer (code 1013, "slow consumer").
    - ``drop_oldest``: drop the oldest queued messages to make room for the new one.
    - ``drop_newest``: drop the new message.
    """

    CLOSE = "close"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class RateLimitPolicy(str, enum.Enum):
    """What happens to an inbound message over ``WS_RATE_LIMIT``.

    - ``close``: close the connection (1008, "rate limit exceeded").
    - ``drop``: drop the message, count it, keep the connection.
    """

    CLOSE = "close"
    DROP = "drop"


# -- parsers: ``parse(name, raw)`` returns the value or raises naming ``name`` and ``raw`` --


def _int(name: str, raw: object) -> int:
    if isinstance(raw, str):
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
    elif isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{name}={raw!r} is not an integer")
    else:
        value = raw
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive integer")
    return value


def _seconds(name: str, raw: object) -> float:
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ConfigError(f"{name}={raw!r} is not a number of seconds")
    else:
        value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _limit(name: str, raw: object) -> int:
    """A whole number, 0 meaning "no limit"."""
    if raw in (0, "0") or (isinstance(raw, str) and raw.strip() == "0"):
        return 0
    try:
        return _int(name, raw)
    except ConfigError:
        raise ConfigError(f"{name}={raw!r} must be a whole number, 0 for no limit") from None


def _seconds_or_off(name: str, raw: object) -> float:
    """A number of seconds, 0 meaning "off"."""
    if raw in (0, "0") or (isinstance(raw, str) and raw.strip() in ("0", "0.0")):
        return 0.0
    try:
        return _seconds(name, raw)
    except ConfigError:
        raise ConfigError(f"{name}={raw!r} must be a positive number, 0 for off") from None


def _rate(name: str, raw: object) -> float:
    """Messages per second, 0 meaning "no limit"."""
    try:
        return _seconds_or_off(name, raw)
    except ConfigError:
        raise ConfigError(f"{name}={raw!r} must be messages per second, 0 for no limit") from None


def _text(name: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{name}={raw!r} is not a string")
    return raw


def _origins(name: str, raw: object) -> tuple[str, ...] | None:
    """Comma-separated origins and patterns; empty or unset: same host only."""
    if raw is None:
        return None
    if isinstance(raw, str):
        entries = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif isinstance(raw, (list, tuple)) and all(isinstance(e, str) for e in raw):
        entries = tuple(e.strip() for e in raw if e.strip())
    else:
        raise ConfigError(f"{name}={raw!r} is not a list of origins")
    if not entries:
        return None
    from .security import OriginPolicy

    try:
        OriginPolicy(entries)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None
    return entries


#: The shortest API key taken: a guessable key would open the whole API.
MIN_API_KEY_CHARS = 16


def _api_key(name: str, raw: object) -> str | None:
    """A secret: never put in an error message. Empty means "no key": the API is off."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"{name} is not a string")
    # A key read from a file often ends in a newline, which no header can carry.
    raw = raw.strip()
    if not raw:
        return None
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ConfigError(f"{name} holds spaces or control characters, which no header can carry")
    if len(raw) < MIN_API_KEY_CHARS:
        raise ConfigError(
            f"{name} is {len(raw)} characters long: an API key needs at least "
            f"{MIN_API_KEY_CHARS} (e.g. the output of `openssl rand -hex 32`)"
        )
    return raw


def _api_path(name: str, raw: object) -> str:
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise ConfigError(f"{name}={raw!r} must be a path starting with '/'")
    if any(c in raw for c in "<>{}?# ") or len(raw) != len(raw.strip()):
        # A plain path: no route parameter, query, fragment or space.
        raise ConfigError(f"{name}={raw!r} must be a plain path, e.g. /api")
    return raw


def _rate_policy(name: str, raw: object) -> RateLimitPolicy:
    try:
        return RateLimitPolicy(raw.strip().lower() if isinstance(raw, str) else raw)
    except ValueError:
        choices = ", ".join(p.value for p in RateLimitPolicy)
        raise ConfigError(f"{name}={raw!r} is not one of: {choices}") from None


def _broker_url(name: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{name}={raw!r} is not a URL")
    from .brokers import check_broker_url

    return check_broker_url(raw.strip(), name)


def _policy(name: str, raw: object) -> SlowConsumerPolicy:
    try:
        return SlowConsumerPolicy(raw.strip().lower() if isinstance(raw, str) else raw)
    except ValueError:
        choices = ", ".join(p.value for p in SlowConsumerPolicy)
        raise ConfigError(f"{name}={raw!r} is not one of: {choices}") from None


# Numbers come as strings only from the environment; in code, pass the number itself.
# What each numeric parser calls the value it wants, for that error.
_NUMBERS: dict[Callable[[str, object], object], str] = {
    _int: "an integer",
    _limit: "an integer",
    _seconds: "a number",
    _seconds_or_off: "a number",
    _rate: "a number",
}


# -- declarations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: the ``Config`` field ``name``, read from the variable ``env``."""

    env: str
    default: Any
    #: ``parse(name, raw)``: the value, or ``ConfigError`` naming ``name`` and ``raw``.
    parse: Callable[[str, object], Any]
    #: One line of markdown: what the setting does, and what 0 or empty means if special.
    doc: str
    #: The ``Config`` field; filled in from the field itself once ``Config`` is built.
    name: str = ""


_KEY = "gobstopper.setting"


def _setting(
    env: str, default: T, parse: Callable[[str, object], T], doc: str, *, secret: bool = False
) -> T:
    """Declare a ``Config`` field: its variable, default, parser and doc, in one place.
    A ``secret`` one is left out of the config's ``repr`` (which ends up in logs)."""
    declared = Setting(env, default, parse, doc)
    # The declaration rides along as field metadata; the annotation stays the field's type.
    return dataclasses.field(default=default, repr=not secret, metadata={_KEY: declared})


@dataclass(frozen=True, slots=True)
class Config:
    """Limits of the WebSocket layer and of broadcast delivery.

    Each attribute is a setting declared below with its environment variable, default
    and meaning; ``Config.load()`` reads them, docs/configuration.md has the table.
    """

    max_message_bytes: int = _setting(
        "MAX_WS_MESSAGE_BYTES",
        1 * MiB,
        _int,
        "the largest message, inbound and outbound, in bytes (text counted in UTF-8): "
        "inbound over it closes the connection (1009), outbound over it raises "
        "`MessageTooBig`",
    )
    send_chunk_bytes: int = _setting(
        "WS_SEND_CHUNK_BYTES",
        64 * KiB,
        _int,
        "the size of each message `send_stream()` sends; at most `MAX_WS_MESSAGE_BYTES` "
        "(unset, it follows a lower limit down)",
    )
    receive_queue_messages: int = _setting(
        "WS_RECEIVE_QUEUE_MESSAGES",
        16,
        _int,
        "inbound messages buffered per connection before the server stops reading "
        "(TCP backpressure then slows the client)",
    )
    send_queue_bytes: int = _setting(
        "WS_SEND_QUEUE_BYTES",
        1 * MiB,
        _int,
        "outbound bytes a managed connection may have queued or in flight; at least "
        "`MAX_WS_MESSAGE_BYTES` (unset, it follows a higher limit up)",
    )
    send_queue_messages: int = _setting(
        "WS_SEND_QUEUE_MESSAGES",
        1024,
        _int,
        "outbound messages a managed connection may have queued or in flight",
    )
    slow_consumer_policy: SlowConsumerPolicy = _setting(
        "WS_SLOW_CONSUMER_POLICY",
        SlowConsumerPolicy.CLOSE,
        _policy,
        "what a full queue does: `close` the connection (1013), `drop_oldest` or `drop_newest`",
    )
    send_timeout: float = _setting(
        "WS_SEND_TIMEOUT",
        10.0,
        _seconds,
        "seconds a send may stay blocked before the connection is closed as a slow consumer",
    )
    shutdown_grace: float = _setting(
        "WS_SHUTDOWN_GRACE",
        5.0,
        _seconds,
        "seconds a stopping server waits for queues to be flushed before closing connections",
    )
    broker_url: str = _setting(
        "GOBSTOPPER_BROKER_URL",
        "memory://",
        _broker_url,
        "how rooms reach other workers and hosts: `memory://` (this process only), "
        "`redis://host:port/db` (`rediss://` for TLS) or a Redis Cluster, "
        "`redis+cluster://host:port,host:port` (`rediss+cluster://` for TLS), "
        "or NATS, `nats://host:port[,host:port]` (`tls://` for TLS); Redis needs "
        "the `redis` extra, NATS the `nats` extra",
    )
    presence_ttl: float = _setting(
        "GOBSTOPPER_PRESENCE_TTL",
        10.0,
        _seconds,
        "seconds after which the members of a worker that died without a word leave the "
        "cluster-wide presence",
    )
    presence_meta_bytes: int = _setting(
        "GOBSTOPPER_PRESENCE_META_BYTES",
        1 * KiB,
        _int,
        "the largest presence metadata of one connection, as JSON bytes (`Identity.meta`, "
        "`set_meta()`); over it raises `ValueError`",
    )
    refresh_window: float = _setting(
        "GOBSTOPPER_REFRESH_WINDOW",
        30.0,
        _seconds,
        "seconds before a credential expires that the server asks the client to refresh it "
        "(`rpc.refresh_due`); half the remaining lifetime when that is shorter",
    )
    allowed_origins: tuple[str, ...] | None = _setting(
        "WS_ALLOWED_ORIGINS",
        None,
        _origins,
        "origins whose pages may connect (comma-separated `scheme://host[:port]`; "
        "`https://*.example.com` patterns; `*` for any); unset: only pages of the host, port "
        "and scheme they connect to; others and malformed origins get 403",
    )
    max_connections: int = _setting(
        "WS_MAX_CONNECTIONS",
        0,
        _limit,
        "open WebSockets per worker, 0 for no limit; past it the handshake gets 503",
    )
    max_connections_per_ip: int = _setting(
        "WS_MAX_CONNECTIONS_PER_IP",
        0,
        _limit,
        "open WebSockets per client address per worker, 0 for no limit; past it, 429",
    )
    rate_limit: float = _setting(
        "WS_RATE_LIMIT",
        0.0,
        _rate,
        "inbound messages per second per connection (a token bucket), 0 for no limit",
    )
    rate_limit_burst: int = _setting(
        "WS_RATE_LIMIT_BURST",
        0,
        _limit,
        "inbound messages allowed at once; 0: twice the rate, at least `WS_RECEIVE_QUEUE_MESSAGES`",
    )
    rate_limit_policy: RateLimitPolicy = _setting(
        "WS_RATE_LIMIT_POLICY",
        RateLimitPolicy.CLOSE,
        _rate_policy,
        'a message over the rate: `close` the connection (1008 "rate limit exceeded") or '
        "`drop` it (counted)",
    )
    idle_timeout: float = _setting(
        "WS_IDLE_TIMEOUT",
        0.0,
        _seconds_or_off,
        "seconds without an inbound message before the connection is closed (1001), 0 for never",
    )
    heartbeat_message: str = _setting(
        "WS_HEARTBEAT_MESSAGE",
        "",
        _text,
        "a text message the framework answers by itself with `WS_HEARTBEAT_REPLY`, "
        "not handed to the handler; empty for none",
    )
    heartbeat_reply: str = _setting(
        "WS_HEARTBEAT_REPLY",
        "pong",
        _text,
        "the answer to `WS_HEARTBEAT_MESSAGE`",
    )
    api_key: str | None = _setting(
        "GOBSTOPPER_API_KEY",
        None,
        _api_key,
        "the key of the HTTP API (`Authorization: Bearer <key>`), at least 16 characters; "
        "unset or empty: the API is off",
        secret=True,
    )
    api_path: str = _setting(
        "GOBSTOPPER_API_PATH",
        "/api",
        _api_path,
        "where the HTTP API takes its commands (`POST`), when `GOBSTOPPER_API_KEY` is set",
    )
    api_max_bytes: int = _setting(
        "GOBSTOPPER_API_MAX_BYTES",
        1 * MiB,
        _int,
        "the largest request body the HTTP API reads, in bytes; past it the answer is 413",
    )

    http_max_body_bytes: int = _setting(
        "HTTP_MAX_BODY_BYTES",
        1 * MiB,
        _limit,
        "the largest request body an HTTP route reads, in bytes, 0 for no limit; past it "
        "(or a `Content-Length` past it) the answer is 413, and reading stops there",
    )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config: constructor values win, then the environment, then defaults.

        Args:
            environ: the environment to read (default ``os.environ``).
            overrides: values by field name; ``None`` means "not given".

        Raises:
            ConfigError: a value has the wrong type or range, or two values disagree;
                the message names the variable (or argument) and the value.
        """
        env = os.environ if environ is None else environ
        unknown = set(overrides) - SETTINGS.keys()
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        given: set[str] = set()
        for s in SETTINGS.values():
            value = overrides.get(s.name)
            if value is not None:
                kind = _NUMBERS.get(s.parse)
                if isinstance(value, str) and kind is not None:
                    raise ConfigError(f"{s.name}={value!r} is not {kind}")
                values[s.name] = s.parse(s.name, value)
                sources[s.name] = s.name
                given.add(s.name)
            elif s.env in env:
                values[s.name] = s.parse(s.env, env[s.env])
                sources[s.name] = s.env
                given.add(s.name)
            else:
                values[s.name] = s.default
                sources[s.name] = s.env
        limit = values["max_message_bytes"]
        # A lowered message limit pulls the default chunk down; a raised one pulls the
        # default queue size up. Values set explicitly are checked, never adjusted.
        if "send_chunk_bytes" not in given:
            values["send_chunk_bytes"] = min(values["send_chunk_bytes"], limit)
        if "send_queue_bytes" not in given:
            values["send_queue_bytes"] = max(values["send_queue_bytes"], limit)
        if values["send_chunk_bytes"] > limit:
            raise ConfigError(
                f"{sources['send_chunk_bytes']}={values['send_chunk_bytes']} is larger than "
                f"{sources['max_message_bytes']}={limit}: a chunk must fit in one message"
            )
        if values["send_queue_bytes"] < limit:
            raise ConfigError(
                f"{sources['send_queue_bytes']}={values['send_queue_bytes']} is smaller than "
                f"{sources['max_message_bytes']}={limit}: the queue must hold one message"
            )
        return cls(**values)


#: The declarations, by field name, in the order of ``Config``'s fields.
SETTINGS: Mapping[str, Setting] = {
    f.name: dataclasses.replace(f.metadata[_KEY], name=f.name) for f in dataclasses.fields(Config)
}


class SettingsArgs(TypedDict, total=False):
    """The settings as keyword arguments of ``Gobstopper()``; ``None`` means "not given".

    Each key is a ``Config`` field, of its type or ``None``; policies also take their
    name, and ``allowed_origins`` any iterable of strings or a comma-separated string.
    Kept by hand for editors and type checkers; a unit test holds it to ``SETTINGS``.
    """

    max_message_bytes: int | None
    send_chunk_bytes: int | None
    receive_queue_messages: int | None
    send_queue_bytes: int | None
    send_queue_messages: int | None
    slow_consumer_policy: SlowConsumerPolicy | str | None
    send_timeout: float | None
    shutdown_grace: float | None
    broker_url: str | None
    presence_ttl: float | None
    presence_meta_bytes: int | None
    refresh_window: float | None
    allowed_origins: Iterable[str] | str | None
    max_connections: int | None
    max_connections_per_ip: int | None
    rate_limit: float | None
    rate_limit_burst: int | None
    rate_limit_policy: RateLimitPolicy | str | None
    idle_timeout: float | None
    heartbeat_message: str | None
    heartbeat_reply: str | None
    api_key: str | None
    api_path: str | None
    api_max_bytes: int | None
    http_max_body_bytes: int | None


# -- documentation ----------------------------------------------------------------------


def _shown_default(setting: Setting) -> str:
    """The default as the docs show it, e.g. ``1048576 (1 MiB)``, ``10`` or ``unset``."""
    value = setting.default
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    # Sizes read better with their unit next to the exact number.
    if setting.env.endswith("_BYTES") and isinstance(value, int):
        for unit, size in (("MiB", MiB), ("KiB", KiB)):
            if value >= size and value % size == 0:
                return f"{value} ({value // size} {unit})"
    return str(value)


def markdown_table(names: Iterable[str] | None = None) -> str:
    """The settings (all, or those ``names``) as a markdown table, as the docs show them."""
    chosen = SETTINGS.values() if names is None else [SETTINGS[name] for name in names]
    rows = ["| environment variable | argument | default | meaning |", "|---|---|---|---|"]
    for s in chosen:
        rows.append(f"| `{s.env}` | `{s.name}` | {_shown_default(s)} | {s.doc} |")
    return "\n".join(rows) + "\n"


def _attributes() -> str:
    lines = [
        textwrap.fill(
            f"{s.name}: {s.doc}. Variable `{s.env}`, default {_shown_default(s)}.",
            88,
            initial_indent="    ",
            subsequent_indent="        ",
        )
        for s in SETTINGS.values()
    ]
    return "\n\nAttributes:\n" + "\n".join(lines)


# help(Config) lists every setting, from the same declarations as the docs' tables.
Config.__doc__ = inspect.cleandoc(Config.__doc__ or "") + _attributes()
