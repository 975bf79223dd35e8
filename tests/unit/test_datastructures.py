from __future__ import annotations

from gobstopper import Address, Headers, QueryParams
from gobstopper.datastructures import parse_cookies


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("X-Token", "a"), ("x-token", "b"), ("Host", "h")])
    assert headers["x-token"] == "a" and headers["X-TOKEN"] == "a"
    assert headers.get("HOST") == "h" and headers.get("missing") is None
    assert headers.getlist("X-Token") == ["a", "b"]
    assert "host" in headers and len(headers) == 2


def test_query_params() -> None:
    params = QueryParams("tag=a&tag=b&empty=&name=J%C3%BCrgen+X")
    assert params["tag"] == "a" and params.getlist("tag") == ["a", "b"]
    assert params["empty"] == "" and params["name"] == "Jürgen X"
    assert QueryParams(b"x=1")["x"] == "1"


def test_cookies_are_parsed_leniently() -> None:
    assert parse_cookies('a=1; b="two"; junk; c=3=3; a=ignored') == {
        "a": "1",
        "b": "two",
        "c": "3=3",
    }
    assert parse_cookies(None) == {}


def test_address_parsing() -> None:
    assert Address.parse("127.0.0.1:5000") == Address("127.0.0.1", 5000)
    assert Address.parse("[::1]:80") == Address("::1", 80)
    assert Address.parse(None) is None
