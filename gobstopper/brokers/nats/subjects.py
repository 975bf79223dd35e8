"""Names on NATS: broker channels as subjects, presence as key-value keys, history as
JetStream streams. Pure functions, no I/O.

A NATS subject is dot-separated tokens; ``*`` (one token) and ``>`` (the rest) are
wildcards, and spaces, empty tokens and wildcards in a published subject are not
allowed. The manager's broker channels are free text, so each is mapped onto one
subject under the broker's prefix token:

==========================  ==========================================
broker channel              subject
==========================  ==========================================
``all``                     ``<p>.all``
``room:<name>``             ``<p>.room.<name as one token>``
``node:<id>``               ``<p>.node.<id as one token>``
``chan:<channel>``          ``<p>.chan.<segment>.<segment>...``
``chan:<pattern>``          the same, ``*`` kept, a final ``**`` as ``>``
anything else               ``<p>.x.<channel as one token>``
==========================  ==========================================

A literal becomes one token by escaping every byte of its UTF-8 form outside
``[A-Za-z0-9_-]`` as ``=XX`` (``lobby 1`` -> ``lobby=201``; the empty name is ``=``), so
that no name can reach into another's subject or carry a wildcard; a token longer than
``MAX_TOKEN`` is a digest of the name instead (``=H<sha-256>``). The segments of a
message-layer channel are escaped one by one, so that ``news.*`` subscribes to
``<p>.chan.news.*`` and NATS itself routes ``news.sport`` only to the nodes that asked
for it. A channel with a wildcard cannot be published to (``SubjectError``).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "CHANNEL",
    "MAX_TOKEN",
    "SubjectError",
    "kv_key",
    "kv_prefix",
    "prefix_token",
    "stream_name",
    "stream_subject",
    "subject",
    "token",
    "untoken",
    "wildcard",
]

#: Broker channels starting with this are message-layer channels and patterns: their
#: ``*`` and ``**`` segments are NATS wildcards.
CHANNEL = "chan:"

#: The longest token written as the name itself (escaped); longer names are digested.
MAX_TOKEN = 200

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class SubjectError(ValueError):
    """A channel that cannot be a NATS subject (an empty segment, a wildcard where none
    may be, or a wildcard in a subject one publishes to)."""


def token(text: str) -> str:
    """``text`` as one subject token (and one key-value key token), with nothing but
    ``[A-Za-z0-9_=-]``: reversible up to ``MAX_TOKEN`` characters; a longer one is
    ``=H`` and a digest of the name (no escape starts so), since NATS closes a
    connection whose command line passes 4 KiB."""
    if _PLAIN.fullmatch(text) and len(text) <= MAX_TOKEN:
        return text
    if not text:
        return "="
    raw = text.encode("utf-8", "surrogatepass")
    escaped = "".join(chr(b) if b in _PLAIN_BYTES else f"={b:02X}" for b in raw)
    if len(escaped) <= MAX_TOKEN:
        return escaped
    return "=H" + hashlib.sha256(raw).hexdigest()


def untoken(text: str) -> str:
    """Undo ``token`` (of a name no longer than ``MAX_TOKEN`` once escaped)."""
    if "=" not in text:
        return text
    if text == "=":
        return ""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "=":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return out.decode("utf-8", "surrogatepass")


def prefix_token(prefix: str) -> str:
    """The first token of every subject, from a broker prefix such as ``gobstopper:``."""
    return re.sub(r"[^A-Za-z0-9_-]", "", prefix) or "gobstopper"


def wildcard(channel: str) -> bool:
    """Whether the broker channel's subject has a wildcard (one can only subscribe)."""
    return channel.startswith(CHANNEL) and "*" in channel


def subject(prefix: str, channel: str) -> str:
    """The subject of broker channel ``channel`` under ``prefix`` (a ``prefix_token``).

    Raises:
        SubjectError: a ``chan:`` channel with an empty segment or a misplaced wildcard.
    """
    if channel == "all":
        return prefix + ".all"
    kind, sep, name = channel.partition(":")
    if sep and kind in ("room", "node"):
        return f"{prefix}.{kind}.{token(name)}"
    if sep and kind == "chan":
        return f"{prefix}.chan.{_pattern(name)}"
    return f"{prefix}.x.{token(channel)}"


def _pattern(pattern: str) -> str:
    segments = pattern.split(".")
    last = len(segments) - 1
    out = []
    for i, segment in enumerate(segments):
        if segment == "*":
            out.append("*")
        elif segment == "**" and i == last:
            out.append(">")
        elif not segment or "*" in segment:
            raise SubjectError(f"not a channel or pattern NATS can route: {pattern!r}")
        else:
            out.append(token(segment))
    return ".".join(out)


def kv_prefix(key: str) -> str:
    """The key-value key token of presence key ``key`` (its members are under it)."""
    return token(key)


def kv_key(key: str, member: str) -> str:
    """The key-value key of ``member`` under presence key ``key``."""
    return f"{token(key)}.{token(member)}"


def stream_name(prefix: str, stream: str) -> str:
    """The JetStream stream that keeps history stream ``stream``: stream names allow few
    characters and a bounded length, so a digest of the name (the real name is in its
    subject)."""
    digest = hashlib.sha256(stream.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{prefix}_history_{digest}"


def stream_subject(prefix: str, stream: str) -> str:
    """The subject a history stream's publications are appended on."""
    return f"{prefix}.history.{token(stream)}"
