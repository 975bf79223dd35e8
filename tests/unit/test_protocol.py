"""The message protocol without I/O: builders, the server's parsing against the JSON-RPC
2.0 specification's cases, batch limits, and the client's parsing of what it receives."""

from __future__ import annotations

from typing import Any

import pytest

from gobstopper.messages import protocol
from gobstopper.messages.protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_BATCH,
    ErrorCode,
    Notification,
    Request,
    Response,
    RPCError,
)


def test_builders() -> None:
    assert protocol.request("add", [2, 3], 1) == {
        "jsonrpc": "2.0",
        "method": "add",
        "id": 1,
        "params": [2, 3],
    }
    assert protocol.request("rpc.info", None, 7) == {
        "jsonrpc": "2.0",
        "method": "rpc.info",
        "id": 7,
    }
    assert protocol.request("f", [], 1)["params"] == []  # empty, not absent
    assert protocol.notification("log", {"line": "hi"}) == {
        "jsonrpc": "2.0",
        "method": "log",
        "params": {"line": "hi"},
    }
    assert protocol.notification("ping") == {"jsonrpc": "2.0", "method": "ping"}
    assert protocol.result(3, None) == {"jsonrpc": "2.0", "result": None, "id": 3}
    assert protocol.error(None, RPCError(-32700, "Parse error")) == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    assert protocol.error(2, RPCError(4000, "no", {"a": 1}))["error"] == {
        "code": 4000,
        "message": "no",
        "data": {"a": 1},
    }
    assert protocol.channel_message("news.a", 1)["params"] == {"channel": "news.a", "data": 1}
    assert protocol.channel_message("news.a", 1)["method"] == protocol.MESSAGE
    assert protocol.event_push("said", {"t": 1}, "ann") == {
        "jsonrpc": "2.0",
        "method": "rpc.event",
        "params": {"event": "said", "data": {"t": 1}, "from": "ann"},
    }
    assert protocol.stream_item(5, "x") == {
        "jsonrpc": "2.0",
        "method": "rpc.stream",
        "params": {"id": 5, "item": "x"},
    }


def test_names_and_codes() -> None:
    names = (protocol.SUBSCRIBE, protocol.UNSUBSCRIBE, protocol.PUBLISH, protocol.CANCEL)
    names += (protocol.INFO, protocol.MESSAGE, protocol.EVENT, protocol.STREAM, protocol.HISTORY)
    assert all(name.startswith(protocol.RESERVED_PREFIX) for name in names)
    assert len(set(names)) == len(names)
    for code in ErrorCode:
        assert getattr(protocol, code.name) == code.value
        assert type(getattr(protocol, code.name)) is int
    assert protocol.REQUEST_CANCELLED == -32800 and protocol.INVALID_REQUEST == -32600


def test_a_request_built_here_parses_back() -> None:
    assert protocol.parse_request(protocol.request("add", {"a": 1}, "x")) == Request(
        "add", {"a": 1}, "x", notification=False
    )
    assert protocol.parse_request(protocol.notification("log")) == Request(
        "log", None, None, notification=True
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}, ([42, 23], 1)),
        ({"jsonrpc": "2.0", "method": "subtract", "params": {"a": 1}, "id": "s"}, ({"a": 1}, "s")),
        ({"jsonrpc": "2.0", "method": "f", "id": 1.5}, (None, 1.5)),
        (
            {"jsonrpc": "2.0", "method": "f", "id": None},
            (None, None),
        ),  # a request, not a notification
    ],
)
def test_valid_requests(obj: dict[str, Any], expected: tuple[Any, Any]) -> None:
    parsed = protocol.parse_request(obj)
    assert (parsed.params, parsed.id) == expected
    assert not parsed.notification


@pytest.mark.parametrize(
    "obj",
    [
        # The specification's examples of invalid requests.
        {"jsonrpc": "2.0", "method": 1, "params": "bar"},
        1,
        {"foo": "boo"},
        # And the rules behind them.
        {"method": "f", "id": 1},  # no version
        {"jsonrpc": "1.0", "method": "f", "id": 1},
        {"jsonrpc": 2.0, "method": "f", "id": 1},
        {"jsonrpc": "2.0", "id": 1},  # no method
        {"jsonrpc": "2.0", "method": None, "id": 1},
        {"jsonrpc": "2.0", "method": "f", "params": "bar", "id": 1},
        {"jsonrpc": "2.0", "method": "f", "params": 3, "id": 1},
        {"jsonrpc": "2.0", "method": "f", "params": None, "id": 1},
        {"jsonrpc": "2.0", "method": "f", "id": [1]},
        {"jsonrpc": "2.0", "method": "f", "id": {"a": 1}},
        {"jsonrpc": "2.0", "method": "f", "id": True},
        "a string",
        None,
        [],
    ],
)
def test_invalid_requests(obj: Any) -> None:
    with pytest.raises(RPCError) as info:
        protocol.parse_request(obj)
    assert info.value.code == INVALID_REQUEST
    assert protocol.error(None, info.value)["error"]["message"] == "Invalid Request"


def test_an_invalid_request_is_answered_with_its_id_when_that_is_valid() -> None:
    assert protocol.invalid_request_id({"jsonrpc": "1.0", "method": "f", "id": 4}) == 4
    assert protocol.invalid_request_id({"method": 1, "id": "x"}) == "x"
    assert protocol.invalid_request_id({"method": "f", "id": [1]}) is None
    assert protocol.invalid_request_id({"method": "f", "id": False}) is None
    assert protocol.invalid_request_id([1, 2]) is None
    assert protocol.invalid_request_id(1) is None


def test_batches() -> None:
    assert protocol.parse_batch({"jsonrpc": "2.0", "method": "f"}) is None  # not a batch
    assert protocol.parse_batch(1) is None
    assert protocol.parse_batch([1, 2, 3]) == [1, 2, 3]  # each item is checked on its own
    full = [protocol.notification("f")] * MAX_BATCH
    assert protocol.parse_batch(full) == full
    with pytest.raises(RPCError) as info:
        protocol.parse_batch([])
    assert (info.value.code, info.value.data) == (INVALID_REQUEST, "empty batch")
    with pytest.raises(RPCError) as info:
        protocol.parse_batch([*full, protocol.notification("f")])
    assert info.value.code == INVALID_REQUEST
    assert str(MAX_BATCH) in info.value.data


def test_the_client_reads_answers_and_errors() -> None:
    assert protocol.parse_incoming(protocol.result(1, {"x": 1})) == [Response(1, {"x": 1})]
    assert protocol.parse_incoming({"jsonrpc": "2.0", "id": 2}) == [Response(2, None)]
    (failed,) = protocol.parse_incoming(protocol.error(3, RPCError(4000, "no", {"a": 1})))
    assert isinstance(failed, Response) and failed.id == 3 and failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.data) == (4000, "no", {"a": 1})
    # An error about no request (the server could not read its id) has id None.
    (parse,) = protocol.parse_incoming(protocol.error(None, RPCError(-32700, "Parse error")))
    assert isinstance(parse, Response) and parse.id is None and parse.error is not None


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        ({"code": -32601}, -32601, ""),
        ({"code": "-32601", "message": 5}, -32601, "5"),
        ({"code": "nope"}, INTERNAL_ERROR, ""),
        ({"code": None}, INTERNAL_ERROR, ""),
        ({}, 0, ""),
        (None, 0, ""),
        ("broken", 0, ""),
    ],
)
def test_a_malformed_error_is_still_an_error(error: Any, code: int, message: str) -> None:
    (answer,) = protocol.parse_incoming({"jsonrpc": "2.0", "error": error, "id": 1})
    assert isinstance(answer, Response) and answer.error is not None
    assert (answer.error.code, answer.error.message) == (code, message)


def test_the_client_reads_notifications_in_order_and_skips_garbage() -> None:
    batch = [
        protocol.channel_message("news.a", 1),
        1,
        "text",
        None,
        [protocol.result(9, 9)],  # nested: not an item
        {"jsonrpc": "2.0"},  # neither method nor id
        {"jsonrpc": "2.0", "method": 5},  # a method that is not a name
        protocol.result(4, "four"),
        protocol.stream_item(4, "x"),
        protocol.notification("custom"),
    ]
    assert protocol.parse_incoming(batch) == [
        Notification("rpc.message", {"channel": "news.a", "data": 1}),
        Response(4, "four"),
        Notification("rpc.stream", {"id": 4, "item": "x"}),
        Notification("custom", None),
    ]
    assert protocol.parse_incoming(5) == []
    assert protocol.parse_incoming("garbage") == []
    assert protocol.parse_incoming([]) == []


def test_rpc_error_as_dict() -> None:
    assert RPCError(1, "m").as_dict() == {"code": 1, "message": "m"}
    assert RPCError(1, "m", []).as_dict() == {"code": 1, "message": "m", "data": []}
    assert str(RPCError(1, "m")) == "m"


def test_positions() -> None:
    assert protocol.since(3, "e") == {"offset": 3, "epoch": "e"}
    assert protocol.subscribe_params("feed") == {"channel": "feed"}
    assert protocol.subscribe_params("feed", (3, "e")) == {
        "channel": "feed",
        "since": {"offset": 3, "epoch": "e"},
    }
    assert protocol.history_params("feed") == {"channel": "feed"}
    assert protocol.history_params("feed", 10, (3, "e")) == {
        "channel": "feed",
        "limit": 10,
        "since": {"offset": 3, "epoch": "e"},
    }
    assert protocol.read_position({"channel": "a", "data": 1, "offset": 4, "epoch": "e"}) == (
        4,
        "e",
    )
    for params in ({"channel": "a"}, {"offset": True, "epoch": "e"}, {"offset": 1}, None, [1]):
        assert protocol.read_position(params) is None
