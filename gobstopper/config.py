"""Settings, read once from the constructor or the environment and validated.

A bad value raises :class:`~gobstopper.errors.ConfigError` naming the variable (or the
argument) and the value: there is never a silent fallback to a default.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["Config", "RateLimitPolicy", "SlowConsumerPolicy"]

KiB = 1024
MiB = 1024 * KiB


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


@dataclass(frozen=True, slots=True)
class _Setting:
    field: str
    env: str
    default: Any
    parse: Callable[[str, object], Any]


_SETTINGS = (
    _Setting("max_message_bytes", "MAX_WS_MESSAGE_BYTES", 1 * MiB, _int),
    _Setting("send_chunk_bytes", "WS_SEND_CHUNK_BYTES", 64 * KiB, _int),
    _Setting("receive_queue_messages", "WS_RECEIVE_QUEUE_MESSAGES", 16, _int),
    _Setting("send_queue_bytes", "WS_SEND_QUEUE_BYTES", 1 * MiB, _int),
    _Setting("send_queue_messages", "WS_SEND_QUEUE_MESSAGES", 1024, _int),
    _Setting("slow_consumer_policy", "WS_SLOW_CONSUMER_POLICY", SlowConsumerPolicy.CLOSE, _policy),
    _Setting("send_timeout", "WS_SEND_TIMEOUT", 10.0, _seconds),
    _Setting("shutdown_grace", "WS_SHUTDOWN_GRACE", 5.0, _seconds),
    _Setting("broker_url", "GOBSTOPPER_BROKER_URL", "memory://", _broker_url),
    _Setting("presence_ttl", "GOBSTOPPER_PRESENCE_TTL", 10.0, _seconds),
    _Setting("allowed_origins", "WS_ALLOWED_ORIGINS", None, _origins),
    _Setting("max_connections", "WS_MAX_CONNECTIONS", 0, _limit),
    _Setting("max_connections_per_ip", "WS_MAX_CONNECTIONS_PER_IP", 0, _limit),
    _Setting("rate_limit", "WS_RATE_LIMIT", 0.0, _rate),
    _Setting("rate_limit_burst", "WS_RATE_LIMIT_BURST", 0, _limit),
    _Setting("rate_limit_policy", "WS_RATE_LIMIT_POLICY", RateLimitPolicy.CLOSE, _rate_policy),
    _Setting("idle_timeout", "WS_IDLE_TIMEOUT", 0.0, _seconds_or_off),
    _Setting("heartbeat_message", "WS_HEARTBEAT_MESSAGE", "", _text),
    _Setting("heartbeat_reply", "WS_HEARTBEAT_REPLY", "pong", _text),
)
# Settings whose constructor value is a string, like their environment value.
_STRINGS = (_policy, _broker_url, _origins, _rate_policy, _text)


@dataclass(frozen=True, slots=True)
class Config:
    """Limits of the WebSocket layer and of broadcast delivery.

    Attributes:
        max_message_bytes: largest message accepted or sent (``MAX_WS_MESSAGE_BYTES``,
            default 1 MiB). Inbound over it closes the connection with 1009; outbound
            over it raises ``MessageTooBig``.
        send_chunk_bytes: size of each message ``send_stream`` sends
            (``WS_SEND_CHUNK_BYTES``, default 64 KiB, or ``max_message_bytes`` when that
            is smaller and no chunk size is set); at most ``max_message_bytes``.
        receive_queue_messages: inbound messages buffered per connection before the
            server stops reading from the socket (``WS_RECEIVE_QUEUE_MESSAGES``,
            default 16); past it the client is slowed by TCP backpressure.
        send_queue_bytes: outbound bytes a managed connection may have queued or in
            flight (``WS_SEND_QUEUE_BYTES``, default 1 MiB, raised to
            ``max_message_bytes`` when that is larger and this is not set).
        send_queue_messages: outbound messages a managed connection may have queued or
            in flight (``WS_SEND_QUEUE_MESSAGES``, default 1024).
        slow_consumer_policy: what a full queue does (``WS_SLOW_CONSUMER_POLICY``:
            ``close`` (default), ``drop_oldest`` or ``drop_newest``).
        send_timeout: seconds a send may stay blocked before the connection is closed
            as a slow consumer (``WS_SEND_TIMEOUT``, default 10).
        shutdown_grace: seconds shutdown waits for queued messages to be flushed before
            closing connections (``WS_SHUTDOWN_GRACE``, default 5).
        broker_url: how rooms reach other workers and hosts (``GOBSTOPPER_BROKER_URL``):
            ``memory://`` (default, this process only) or ``redis://host:port/db``
            (``rediss://`` for TLS; needs ``gobstopper[redis]``).
        presence_ttl: seconds after which the members of a worker that died without a
            word leave the cluster-wide presence (``GOBSTOPPER_PRESENCE_TTL``, default 10).
        allowed_origins: origins whose pages may connect (``WS_ALLOWED_ORIGINS``,
            comma-separated, ``*.example.com`` patterns, ``*`` for any); unset: the
            page must come from the host it connects to. Others get 403.
        max_connections: open WebSockets per worker (``WS_MAX_CONNECTIONS``, default 0:
            no limit); past it the upgrade gets 503.
        max_connections_per_ip: open WebSockets per client address per worker
            (``WS_MAX_CONNECTIONS_PER_IP``, default 0: no limit); past it, 429.
        rate_limit: inbound messages per second per connection (``WS_RATE_LIMIT``,
            default 0: no limit), with a burst of ``rate_limit_burst``
            (``WS_RATE_LIMIT_BURST``, default: twice the rate, at least
            ``receive_queue_messages``).
        rate_limit_policy: ``close`` (1008, default) or ``drop`` (``WS_RATE_LIMIT_POLICY``).
        idle_timeout: seconds without an inbound message before a connection is closed
            (``WS_IDLE_TIMEOUT``, default 0: never).
        heartbeat_message: a text message the framework answers by itself with
            ``heartbeat_reply`` and does not hand to the handler
            (``WS_HEARTBEAT_MESSAGE``, default empty: none; ``WS_HEARTBEAT_REPLY``,
            default ``pong``).
    """

    max_message_bytes: int = 1 * MiB
    send_chunk_bytes: int = 64 * KiB
    receive_queue_messages: int = 16
    send_queue_bytes: int = 1 * MiB
    send_queue_messages: int = 1024
    slow_consumer_policy: SlowConsumerPolicy = SlowConsumerPolicy.CLOSE
    send_timeout: float = 10.0
    shutdown_grace: float = 5.0
    broker_url: str = "memory://"
    presence_ttl: float = 10.0
    allowed_origins: tuple[str, ...] | None = None
    max_connections: int = 0
    max_connections_per_ip: int = 0
    rate_limit: float = 0.0
    rate_limit_burst: int = 0
    rate_limit_policy: RateLimitPolicy = RateLimitPolicy.CLOSE
    idle_timeout: float = 0.0
    heartbeat_message: str = ""
    heartbeat_reply: str = "pong"

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
        known = {s.field for s in _SETTINGS}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        given: set[str] = set()
        for s in _SETTINGS:
            value = overrides.get(s.field)
            if value is not None:
                if isinstance(value, str) and s.parse not in _STRINGS:
                    # Strings are for the environment; in code, pass the number itself.
                    kind = "an integer" if s.parse in (_int, _limit) else "a number"
                    raise ConfigError(f"{s.field}={value!r} is not {kind}")
                values[s.field] = s.parse(s.field, value)
                sources[s.field] = s.field
                given.add(s.field)
            elif s.env in env:
                values[s.field] = s.parse(s.env, env[s.env])
                sources[s.field] = s.env
                given.add(s.field)
            else:
                values[s.field] = s.default
                sources[s.field] = s.env
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
