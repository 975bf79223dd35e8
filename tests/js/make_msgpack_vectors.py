"""Values encoded by msgspec (the server's msgpack), for gobstopper.js to decode and encode
alike: ``tests/js/msgpack-vectors.json``, read by ``tests/js/msgpack.test.mjs``.

Made with (``tests/unit/test_js.py`` checks that the file is what this prints)::

    python tests/js/make_msgpack_vectors.py > tests/js/msgpack-vectors.json

Each vector: ``name``, ``hex`` (msgspec's bytes), ``value`` (JSON; bytes as
``{"$bin": hex}``) and ``exact``: whether gobstopper.js encodes ``value`` to the same bytes
(not for a float with no fraction, which JavaScript cannot tell from an integer, nor for
what it reads differently: an integer past 2**53 that a double cannot hold, an integer
map key, a datetime).

A datetime with a time zone is msgpack's timestamp extension; its value is the text
msgspec's JSON encoder writes for it, which gobstopper.js decodes it to (in UTC: msgpack
keeps no offset).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

UTC = timezone.utc

CASES: list[tuple[str, Any, bool]] = [
    ("nil", None, True),
    ("true", True, True),
    ("false", False, True),
    ("positive fixint", 127, True),
    ("uint8", 255, True),
    ("uint16", 65535, True),
    ("uint32", 2**32 - 1, True),
    ("uint64 within safe range", 2**53 - 1, True),
    ("uint64 past safe range", 2**64 - 1, False),
    ("negative fixint", -32, True),
    ("int8", -128, True),
    ("int16", -(2**15), True),
    ("int32", -(2**31), True),
    ("int64 within safe range", -(2**53 - 1), True),
    ("int64 past safe range", -(2**63), True),
    ("uint64 2**53", 2**53, True),
    ("uint64 2**63", 2**63, True),
    ("int64 -(2**53)", -(2**53), True),
    ("float64", 1.5, True),
    ("float64 tiny", -2.5e-300, True),
    ("float64 without fraction", 1.0, False),
    ("fixstr empty", "", True),
    ("fixstr", "hello", True),
    ("fixstr 31", "x" * 31, True),
    ("str8", "y" * 32, True),
    ("str16", "z" * 256, True),
    ("utf-8", "h\u00e9llo \u2713 \U0001d11e", True),
    ("bin8 empty", b"", True),
    ("bin8", b"\x00\x01\xff", True),
    ("bin16", bytes(range(256)), True),
    ("fixarray empty", [], True),
    ("fixarray", [1, "a", None, True], True),
    ("array16", list(range(16)), True),
    ("fixmap empty", {}, True),
    ("fixmap", {"a": 1, "b": [True, {"c": None}]}, True),
    ("map16", {f"k{i}": i for i in range(16)}, True),
    ("integer map key", {1: "one"}, False),
    ("timestamp32", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), False),
    ("timestamp32 epoch", datetime(1970, 1, 1, tzinfo=UTC), False),
    ("timestamp64 microseconds", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), False),
    ("timestamp64 trailing zeros", datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), False),
    ("timestamp64 far future", datetime(2500, 1, 1, tzinfo=UTC), False),
    ("timestamp96 before 1970", datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), False),
    ("timestamp96 year 1", datetime(1, 1, 1, tzinfo=UTC), False),
    ("timestamp96 year 9999", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), False),
    (
        "timestamp of another time zone, in UTC",
        datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))).astimezone(UTC),
        False,
    ),
    (
        "timestamp in an answer",
        {"id": 3, "result": {"at": datetime(2026, 5, 6, tzinfo=UTC)}},
        False,
    ),
    (
        "a request",
        {"jsonrpc": "2.0", "method": "add", "params": [2, 3.5], "id": 1},
        True,
    ),
    (
        "an answer",
        {"jsonrpc": "2.0", "result": {"id": "c1", "subscriptions": ["a.b"]}, "id": 7},
        True,
    ),
]


def as_json(value: Any) -> Any:
    """``value`` in JSON, bytes tagged (JSON has none)."""
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, datetime):
        return msgspec.json.decode(msgspec.json.encode(value))
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    return value


def vectors() -> str:
    """The vectors file's text."""
    encode = msgspec.msgpack.Encoder().encode
    rows = [
        {"name": name, "hex": encode(value).hex(), "value": as_json(value), "exact": exact}
        for name, value, exact in CASES
    ]
    return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(vectors(), end="")
