"""Encodings of the message layer: JSON (text frames) and msgpack (binary frames).

A client picks one when it connects (``?encoding=msgpack``; JSON when absent); every
message both ways uses it. Both go through msgspec: one C library for parsing,
encoding and validating parameters.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["CODECS", "Codec", "DecodeError"]

DecodeError = msgspec.DecodeError

_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode
_msgpack_decode = msgspec.msgpack.Decoder().decode
_msgpack_encode = msgspec.msgpack.Encoder().encode


class Codec:
    """One encoding: its name, whether its frames are binary, and its two functions."""

    __slots__ = ("binary", "name")

    def __init__(self, name: str, binary: bool) -> None:
        self.name = name
        self.binary = binary

    def decode(self, raw: str | bytes) -> Any:
        """Parse one frame.

        Raises:
            DecodeError: it is not valid for this encoding, or nested too deeply.
        """
        try:
            if self.binary:
                if isinstance(raw, str):
                    raise DecodeError("msgpack messages are binary frames")
                return _msgpack_decode(raw)
            return _json_decode(raw)
        except RecursionError:
            raise DecodeError("nested too deeply") from None

    def encode(self, obj: Any) -> str | bytes:
        """Encode one frame: str (text) for JSON, bytes (binary) for msgpack.

        Raises:
            TypeError: ``obj`` holds something the encoding cannot carry (an unknown
                type, an integer msgpack cannot hold, nesting too deep).
        """
        try:
            if self.binary:
                return _msgpack_encode(obj)
            return _json_encode(obj).decode()
        except (ValueError, OverflowError, RecursionError) as exc:
            raise TypeError(f"{self.name} cannot carry this: {exc}") from None

    def __repr__(self) -> str:
        return f"<Codec {self.name}>"


JSON = Codec("json", binary=False)
MSGPACK = Codec("msgpack", binary=True)

#: The encodings a client may ask for, by name.
CODECS: dict[str, Codec] = {"json": JSON, "msgpack": MSGPACK}


def json_bytes(obj: Any) -> bytes:
    """Compact JSON as bytes (what travels between nodes)."""
    return _json_encode(obj)


def json_loads(raw: str | bytes) -> Any:
    return _json_decode(raw)
