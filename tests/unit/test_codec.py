"""The message layer's two encodings, JSON (text frames) and msgpack (binary frames):
what round-trips, what each frame type is, and what is refused (no sockets)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gobstopper.messages.codec import CODECS, JSON, MSGPACK, Codec, DecodeError

BOTH = pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack carries
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
    | text
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)
containers = st.lists(values, max_size=5) | st.dictionaries(text, values, max_size=5)


def nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


def test_the_encodings_a_client_may_ask_for() -> None:
    assert CODECS == {"json": JSON, "msgpack": MSGPACK}
    assert all(codec.name == name for name, codec in CODECS.items())
    assert (JSON.binary, MSGPACK.binary) == (False, True)


@BOTH
@given(value=values)
def test_every_json_value_round_trips_in_its_frame_type(codec: Codec, value: Any) -> None:
    frame = codec.encode(value)
    assert isinstance(frame, bytes if codec.binary else str)
    assert codec.decode(frame) == value


@given(value=values)
def test_json_in_a_binary_frame_reads_as_in_a_text_frame(value: Any) -> None:
    frame = JSON.encode(value)
    assert isinstance(frame, str)
    assert JSON.decode(frame.encode()) == JSON.decode(frame) == value


def test_json_is_compact_and_keeps_unicode_as_is() -> None:
    frame = JSON.encode({"jsonrpc": "2.0", "params": ["héllo", 1.5, None, True]})
    assert frame == '{"jsonrpc":"2.0","params":["héllo",1.5,null,true]}'


@given(frame=st.text())
def test_msgpack_refuses_any_text_frame(frame: str) -> None:
    with pytest.raises(DecodeError):
        MSGPACK.decode(frame)


@pytest.mark.parametrize(
    ("codec", "frame"),
    [
        (JSON, ""),
        (JSON, "{not json"),
        (JSON, '{"a": 1'),
        (JSON, "[1, 2,]"),
        (JSON, "1 2"),  # two values in one frame
        (JSON, "NaN"),
        (JSON, b"\xff\xfe"),  # not UTF-8
        (MSGPACK, b""),
        (MSGPACK, b"\xc1"),  # a byte msgpack never uses
        (MSGPACK, b"\x92\x01"),  # an array of two with one item
        (MSGPACK, b"\x01\x02"),  # two values in one frame
    ],
)
def test_garbage_is_refused_with_decode_error(codec: Codec, frame: str | bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(frame)


@BOTH
@given(value=containers, data=st.data())
def test_a_cut_off_message_is_refused(codec: Codec, value: Any, data: st.DataObject) -> None:
    frame = codec.encode(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    with pytest.raises(DecodeError):
        codec.decode(frame[:cut])


@BOTH
@given(frame=st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error_only(codec: Codec, frame: bytes) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        codec.decode(frame)


@BOTH
def test_nesting_a_few_hundred_deep_round_trips(codec: Codec) -> None:
    value = nested(500)
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize(
    ("codec", "frame"),
    [(JSON, "[" * 50_000), (JSON, b"[" * 50_000), (MSGPACK, b"\x91" * 50_000)],
    ids=["json-text", "json-binary", "msgpack"],
)
def test_nesting_deeper_than_the_interpreter_allows_is_refused(
    codec: Codec, frame: str | bytes
) -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        codec.decode(frame)


@BOTH
def test_what_an_encoding_cannot_carry_is_refused(codec: Codec) -> None:
    with pytest.raises(TypeError):
        codec.encode({"data": object()})
    with pytest.raises(TypeError, match="cannot carry"):
        codec.encode(nested(50_000))


def test_msgpack_cannot_carry_integers_past_64_bits_and_json_can() -> None:
    huge = 2**70
    assert JSON.decode(JSON.encode(huge)) == huge
    with pytest.raises(TypeError, match="msgpack cannot carry"):
        MSGPACK.encode(huge)
