"""Channel names, wildcard patterns and the codecs, without sockets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gobstopper.messages import RPC, Event, matches
from gobstopper.messages.channels import valid_channel, valid_pattern
from gobstopper.messages.codec import CODECS, DecodeError
from gobstopper.websocket import WebSocket

from .rpc_peer import served

segment = st.text(
    alphabet=st.characters(blacklist_characters=".*", blacklist_categories=("Zs", "Cc")),
    min_size=1,
    max_size=8,
).filter(lambda s: not any(c.isspace() for c in s))
channel = st.lists(segment, min_size=1, max_size=6).map(".".join)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("news.*", "news.sport", True),
        ("news.*", "news", False),
        ("news.*", "news.sport.football", False),
        ("chat.*.typing", "chat.lobby.typing", True),
        ("chat.*.typing", "chat.lobby.message", False),
        ("chat.**", "chat.lobby", True),
        ("chat.**", "chat.lobby.typing", True),
        ("chat.**", "chat", False),
        ("*", "anything", True),
        ("*", "a.b", False),
        ("news.sport", "news.sport", True),
        ("news.sport", "news.sports", False),
    ],
)
def test_matching(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a b", "a.*", "x" * 257, 5, None])
def test_invalid_channel_names(name: Any) -> None:
    assert not valid_channel(name)


@pytest.mark.parametrize("pattern", ["", "a..b", "**.a", "a.**.b", "a*", "a.b*", "a. b"])
def test_invalid_patterns(pattern: str) -> None:
    assert not valid_pattern(pattern)


@given(channel, st.data())
def test_a_channel_matches_every_pattern_made_from_it(name: str, data: st.DataObject) -> None:
    assert valid_channel(name) and valid_pattern(name) and matches(name, name)
    segments = name.split(".")
    starred = [
        "*" if data.draw(st.booleans()) else s for s in segments
    ]  # any segment may become "*"
    assert matches(".".join(starred), name)
    cut = data.draw(st.integers(min_value=0, max_value=len(segments) - 1))
    deep = ".".join([*segments[:cut], "**"])  # "**" stands for one or more segments
    assert valid_pattern(deep) and matches(deep, name)
    assert not matches(".".join([*segments, "**"]), name)
    assert not matches(name + ".x", name) and not matches(".".join(starred) + ".*", name)


@pytest.mark.parametrize("codec", list(CODECS.values()), ids=list(CODECS))
def test_codecs_round_trip_and_reject_garbage(codec: Any) -> None:
    message = {"jsonrpc": "2.0", "method": "m", "params": [1, "é", None, 2.5, [True]], "id": 1}
    frame = codec.encode(message)
    assert isinstance(frame, bytes if codec.binary else str)
    assert codec.decode(frame) == message
    with pytest.raises(DecodeError):
        codec.decode(b"\xc1" if codec.binary else "{")
    if codec.binary:
        with pytest.raises(DecodeError):
            codec.decode("text frames are not msgpack")


def test_registration_checks() -> None:
    rpc = RPC()
    with pytest.raises(TypeError, match="reserved"):

        @rpc.method(name="rpc.mine")
        async def mine() -> None:
            pass

    with pytest.raises(TypeError, match="cannot validate parameter 'thing'"):

        @rpc.method()
        async def takes(thing: Opaque) -> None:
            pass

    with pytest.raises(TypeError, match="async"):
        rpc.on("sync")(lambda event: None)  # type: ignore[arg-type]

    @rpc.on("taken")
    async def taken(event: Event) -> None:
        pass

    with pytest.raises(TypeError, match="already registered"):

        @rpc.method(name="taken")
        async def again() -> None:
            pass

    with pytest.raises(TypeError, match="cannot resolve"):

        @rpc.method()
        async def unknown(thing: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass

    with pytest.raises(ValueError, match="unknown encoding"):
        RPC(encodings=("json", "xml"))


class Opaque:
    pass


@dataclass
class Point:
    x: int
    y: int


async def test_parameters_are_converted_and_injected_wherever_they_stand() -> None:
    rpc = RPC()

    @rpc.method()
    async def where(ws: Any, p: Point, scale: float = 1.0) -> list[float]:
        assert isinstance(ws, WebSocket)  # the caller's, filled in by the framework
        return [p.x * scale, p.y * scale]

    @rpc.method()
    async def unsendable() -> object:
        return object()

    async with served(rpc) as peer:

        async def ask(params: Any, method: str = "where") -> Any:
            return await peer.call(method, params)

        assert (await ask([{"x": 1, "y": 2}, 2]))["result"] == [2.0, 4.0]
        assert (await ask({"p": {"x": 1, "y": 2}}))["result"] == [1.0, 2.0]
        bad = await ask({"p": {"x": "1", "y": 2}})
        assert bad["error"]["code"] == -32602 and "p" in bad["error"]["data"]
        assert (await ask({"p": {"x": 1, "y": 2}, "ws": 1}))["error"]["code"] == -32602
        assert (await ask([], "unsendable"))["error"] == {
            "code": -32603,
            "message": "Internal error",
        }
        # The built-ins validate their parameters like any method.
        assert (await ask([5], "rpc.subscribe"))["error"]["code"] == -32602
        assert (await ask(["x"], "rpc.subscribe"))["result"] == {
            "channel": "x",
            "subscriptions": 1,
        }


def test_valid_channel_answers_the_same_when_asked_again() -> None:
    # Valid names are remembered; what is not a name (or not hashable) is never.
    for _ in range(2):
        assert valid_channel("news.sport")
        assert not valid_channel("news.*")
        assert not valid_channel(["news.sport"])
        assert not valid_channel("")
