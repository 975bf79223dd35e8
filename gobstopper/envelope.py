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

A publication to a channel with history carries its position (``offset``, ``epoch``),
which the store assigns as it appends: the publisher hands the broker an *open*
envelope (``encode_open``: the map's header counts the two position fields, which are
not written yet), and the broker appends them (``position_fields``) in the same step as
the append, so that every node receives a channel's publications in offset order.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "VERSION",
    "Envelope",
    "EnvelopeError",
    "decode",
    "encode",
    "encode_open",
    "origin_marker",
    "position_fields",
    "positioned",
]

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
        offset: its offset in the channel's history (channels with history only).
        epoch: the epoch of that offset.
    """

    origin: str
    payload: bytes
    binary: bool = False
    topic: str = ""
    room: str | None = None
    target: str | None = None
    channel: str | None = None
    exclude: tuple[str, ...] = ()
    offset: int | None = None
    epoch: str | None = None


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


def encode_open(envelope: Envelope) -> bytes:
    """``envelope`` (without a position) with room for one: append
    ``position_fields(offset, epoch)`` to make it whole.

    Raises:
        ValueError: the envelope has a position already.
    """
    if envelope.offset is not None or envelope.epoch is not None:
        raise ValueError("the envelope has a position already")
    data = bytearray(encode(envelope))
    # Every envelope is a MessagePack fixmap (at most 10 fields): 0x80 | count.
    if data[1] & 0xF0 != 0x80 or (data[1] & 0x0F) > 13:
        raise ValueError("an envelope is a map of at most 13 fields")
    data[1] += 2
    return bytes(data)


def position_fields(offset: int, epoch: str) -> bytes:
    """The two fields that complete an ``encode_open`` envelope."""
    return (
        _encoder.encode("offset")
        + _encoder.encode(offset)
        + _encoder.encode("epoch")
        + (_encoder.encode(epoch))
    )


def origin_marker(origin: str) -> bytes:
    """What ``encode`` writes for ``origin`` after the version byte and the map's header
    (``origin`` is always the first field): a node recognises its own envelopes by it,
    without decoding them (``data[2:].startswith(marker)``)."""
    return _encoder.encode("origin") + _encoder.encode(origin)


class _Position(msgspec.Struct):
    offset: int | None = None


_position_decoder = msgspec.msgpack.Decoder(_Position)


def positioned(data: bytes) -> bool:
    """Whether the envelope ``data`` carries a position, read without copying its
    payload. False for bytes that are not an envelope."""
    try:
        return _position_decoder.decode(memoryview(data)[1:]).offset is not None
    except msgspec.DecodeError:
        return False
