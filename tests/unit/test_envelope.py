"""The envelope between nodes: round trips, the version byte, and garbage refused."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gobstopper import envelope
from gobstopper.envelope import VERSION, Envelope, EnvelopeError

names = st.text(max_size=40)
envelopes = st.builds(
    Envelope,
    origin=names,
    payload=st.binary(max_size=200),
    binary=st.booleans(),
    topic=names,
    room=st.none() | names,
    target=st.none() | names,
    channel=st.none() | names,
    exclude=st.lists(names, max_size=5).map(tuple),
)


@given(envelopes)
def test_every_envelope_survives_a_round_trip(note: Envelope) -> None:
    data = envelope.encode(note)
    assert data[0] == VERSION
    assert envelope.decode(data) == note


def test_the_format_is_a_version_byte_and_a_map_with_named_fields() -> None:
    """What docs/envelope.md promises another language, checked with a plain decoder."""
    note = Envelope("node-1", b"hello", room="lobby", exclude=("alice",))
    data = envelope.encode(note)
    assert data[:1] == b"\x01"
    fields = msgspec.msgpack.decode(data[1:])
    # Defaults are left out: a publisher in another language writes only what it means.
    assert fields == {
        "origin": "node-1",
        "payload": b"hello",
        "room": "lobby",
        "exclude": ["alice"],
    }


def test_a_map_written_by_hand_is_read() -> None:
    data = b"\x01" + msgspec.msgpack.encode(
        {"origin": "php", "payload": b"{}", "target": "bob", "future_field": 1}
    )
    note = envelope.decode(data)
    assert (note.origin, note.payload, note.target, note.binary) == ("php", b"{}", "bob", False)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x02" + msgspec.msgpack.encode({"origin": "a", "payload": b""}), "version 2"),
        (b"node\n{}\nhello", "version 110"),  # the format of older releases
        (b"\x01", "malformed"),
        (b"\x01\xc1", "malformed"),  # a byte msgpack never uses
        (b"\x01" + msgspec.msgpack.encode([1, 2]), "malformed"),
        (b"\x01" + msgspec.msgpack.encode({"payload": b""}), "malformed"),  # no origin
        (b"\x01" + msgspec.msgpack.encode({"origin": 1, "payload": b""}), "malformed"),
        (
            b"\x01" + msgspec.msgpack.encode({"origin": "a", "payload": b"", "exclude": "x"}),
            "malformed",
        ),
        (envelope.encode(Envelope("a", b"x")) + b"trailing", "malformed"),
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(EnvelopeError, match=why):
        envelope.decode(data)


@given(st.binary(max_size=64))
def test_no_bytes_make_the_decoder_fail_otherwise(data: bytes) -> None:
    try:
        note = envelope.decode(data)
    except EnvelopeError:
        return
    assert isinstance(note, Envelope)
