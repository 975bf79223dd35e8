"""The envelope: the one format of everything that crosses nodes through a broker.

A broker moves bytes; what those bytes mean is decided here, once, for the manager
(broadcasts, direct sends) and for the layers above it (the message layer's channel
publications and events). An envelope is one version byte followed by a MessagePack
map with named fields, so that a process in another language can publish into a
cluster (``docs/envelope.md`` describes it field by field)::

    0x01 | {"origin": "<node id>", "payload": <bin>, "binary": false,
            "room": "lobby", "exclude": ["<connection id>"], ...}

Fields left at their default are not written. A decoder refuses what it cannot read
(another version, not a map, a field of the wrong type) with ``EnvelopeError``; the
receiving manager logs and skips such a message, and goes on.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["VERSION", "Envelope", "EnvelopeError", "decode", "encode", "origin_marker"]

#: The version byte this code writes and reads.
VERSION: Final = 1
_VERSION_BYTE: Final = bytes((VERSION,))


class EnvelopeError(ValueError):
    """Bytes that are not an envelope this version can read."""


class Envelope(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=False):
    """One message between nodes.

    Attributes:
        origin: the id of the node that published it (a node skips its own).
        payload: what the recipients get: a WebSocket message's bytes (UTF-8 text
            unless ``binary``), or for a ``topic``, that layer's bytes.
        binary: the payload is a binary message (else UTF-8 text).
        topic: the layer above the manager that handles it (e.g. ``messages:rpc``);
            empty: the manager delivers ``payload`` itself.
        room: for the members of this room only.
        target: for this connection id only.
        channel: for the subscribers of this channel (a ``topic``'s business).
        exclude: connection ids that must not get it.
    """

    origin: str
    payload: bytes
    binary: bool = False
    topic: str = ""
    room: str | None = None
    target: str | None = None
    channel: str | None = None
    exclude: tuple[str, ...] = ()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    """The bytes a broker carries for ``envelope``."""
    return _VERSION_BYTE + _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    """Read an envelope.

    Raises:
        EnvelopeError: empty, another version, or not a well-formed envelope.
    """
    if not data:
        raise EnvelopeError("empty message")
    if data[0] != VERSION:
        raise EnvelopeError(f"envelope version {data[0]} (this node reads {VERSION})")
    try:
        return _decoder.decode(memoryview(data)[1:])
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise EnvelopeError(f"malformed envelope: {exc}") from None


def origin_marker(origin: str) -> bytes:
    """What ``encode`` writes for ``origin`` after the version byte and the map's header
    (``origin`` is always the first field): a node recognises its own envelopes by it,
    without decoding them (``data[2:].startswith(marker)``)."""
    return _encoder.encode("origin") + _encoder.encode(origin)
