"""Settings, read once from the constructor or the environment and validated.

A bad value raises :class:`~gobstopper.errors.ConfigError` naming the variable (or the
argument) and the value: there is never a silent fallback to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["Config"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class _Setting:
    field: str
    env: str
    default: int


_SETTINGS = (
    _Setting("max_message_bytes", "MAX_WS_MESSAGE_BYTES", 1 * MiB),
    _Setting("send_chunk_bytes", "WS_SEND_CHUNK_BYTES", 64 * KiB),
    _Setting("receive_queue_messages", "WS_RECEIVE_QUEUE_MESSAGES", 16),
)


@dataclass(frozen=True, slots=True)
class Config:
    """Limits of the WebSocket layer.

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
    """

    max_message_bytes: int = 1 * MiB
    send_chunk_bytes: int = 64 * KiB
    receive_queue_messages: int = 16

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: int | None) -> Config:
        """Build a config: constructor values win, then the environment, then defaults.

        Args:
            environ: the environment to read (default ``os.environ``).
            overrides: values by field name; ``None`` means "not given".

        Raises:
            ConfigError: a value is not a positive integer, or the chunk size exceeds
                the message size; the message names the variable and the value.
        """
        env = os.environ if environ is None else environ
        known = {s.field for s in _SETTINGS}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, int] = {}
        sources: dict[str, str] = {}
        for s in _SETTINGS:
            given = overrides.get(s.field)
            if given is not None:
                values[s.field] = _positive(s.field, given)
                sources[s.field] = s.field
            elif s.env in env:
                values[s.field] = _parse_env(s.env, env[s.env])
                sources[s.field] = s.env
            else:
                values[s.field] = s.default
                sources[s.field] = s.env
        chunk_given = overrides.get("send_chunk_bytes") is not None or "WS_SEND_CHUNK_BYTES" in env
        if not chunk_given and values["send_chunk_bytes"] > values["max_message_bytes"]:
            # Only the message limit was lowered: the default chunk follows it down.
            values["send_chunk_bytes"] = values["max_message_bytes"]
        if values["send_chunk_bytes"] > values["max_message_bytes"]:
            raise ConfigError(
                f"{sources['send_chunk_bytes']}={values['send_chunk_bytes']} is larger than "
                f"{sources['max_message_bytes']}={values['max_message_bytes']}: a chunk must "
                "fit in one message"
            )
        return cls(**values)


def _parse_env(name: str, raw: str) -> int:
    text = raw.strip()
    try:
        value = int(text, 10)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not an integer (a number of bytes or messages)"
        ) from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive integer")
    return value


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is not an integer")
    if value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return value
