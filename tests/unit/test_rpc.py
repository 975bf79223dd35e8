"""JSON-RPC 2.0 dispatch: the specification's own examples and the error cases, on a
connection served on the in-memory transport."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gobstopper.messages import RPC, RPCError

from .rpc_peer import served

rpc = RPC()


@rpc.method()
async def subtract(minuend: int, subtrahend: int) -> int:
    return minuend - subtrahend


@rpc.method(name="sum")
async def total(*numbers: float) -> float:
    return sum(numbers)


@rpc.method()
async def greet(name: str, title: str | None = None) -> str:
    return f"hello {title + ' ' if title else ''}{name}"


@rpc.method()
async def withdraw(amount: int) -> int:
    if amount > 100:
        raise RPCError(4001, "insufficient funds", {"balance": 100})
    return 100 - amount


@rpc.method()
async def crash() -> None:
    raise RuntimeError("secret detail that must not leak")


@rpc.method()
async def notify_hello(items: list[int]) -> None:
    return None


async def call(raw: str) -> Any:
    async with served(rpc) as peer:
        return await peer.ask(raw)


async def test_positional_and_named_params() -> None:
    assert await call('{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}') == {
        "jsonrpc": "2.0",
        "result": 19,
        "id": 1,
    }
    reply = await call(
        '{"jsonrpc":"2.0","method":"subtract","params":{"subtrahend":23,"minuend":42},"id":3}'
    )
    assert reply["result"] == 19 and reply["id"] == 3
    assert (await call('{"jsonrpc":"2.0","method":"greet","params":["ann","Dr"],"id":"x"}'))[
        "result"
    ] == "hello Dr ann"


async def test_notifications_get_no_answer() -> None:
    assert await call('{"jsonrpc":"2.0","method":"notify_hello","params":[[7]]}') is None
    assert await call('{"jsonrpc":"2.0","method":"no_such_method"}') is None


@pytest.mark.parametrize(
    ("raw", "code", "rid"),
    [
        ('{"jsonrpc":"2.0","method":"foobar","id":"1"}', -32601, "1"),
        ('{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]', -32700, None),
        ('{"jsonrpc":"2.0","method":1,"params":"bar"}', -32600, None),
        ("[]", -32600, None),
        ('{"method":"subtract","params":[1,2],"id":5}', -32600, 5),
        ('{"jsonrpc":"2.0","method":"subtract","params":[1],"id":6}', -32602, 6),
        ('{"jsonrpc":"2.0","method":"subtract","params":["a",2],"id":7}', -32602, 7),
        ('{"jsonrpc":"2.0","method":"subtract","params":[true,2],"id":8}', -32602, 8),
        ('{"jsonrpc":"2.0","method":"greet","params":{"nom":"x"},"id":9}', -32602, 9),
        ('{"jsonrpc":"2.0","method":"notify_hello","params":[["x"]],"id":10}', -32602, 10),
        ("[" * 10000, -32700, None),
    ],
)
async def test_errors_have_the_standard_codes(raw: str, code: int, rid: Any) -> None:
    reply = await call(raw)
    assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] == code and reply["id"] == rid


async def test_application_errors_carry_code_message_and_data() -> None:
    reply = await call('{"jsonrpc":"2.0","method":"withdraw","params":[500],"id":2}')
    assert reply["error"] == {
        "code": 4001,
        "message": "insufficient funds",
        "data": {"balance": 100},
    }


async def test_unexpected_exceptions_do_not_leak(caplog: pytest.LogCaptureFixture) -> None:
    reply = await call('{"jsonrpc":"2.0","method":"crash","id":3}')
    assert reply["error"] == {"code": -32603, "message": "Internal error"}
    assert "secret detail" not in json.dumps(reply)
    assert "secret detail" in caplog.text  # logged on the server, with its traceback


async def test_batches_answer_each_request_and_skip_notifications() -> None:
    raw = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "sum", "params": [1, 2, 4], "id": "1"},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [[7]]},
            {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": "2"},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        ]
    )
    replies = await call(raw)
    assert [r.get("result", r.get("error", {}).get("code")) for r in replies] == [
        7,
        19,
        -32600,
        -32601,
    ]
    only_notifications = json.dumps([{"jsonrpc": "2.0", "method": "notify_hello", "params": [[1]]}])
    assert await call(only_notifications) is None
    assert (await call("[1, 2]")) == [
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}
    ] * 2


def test_registration_errors() -> None:
    with pytest.raises(TypeError, match="async"):
        rpc.method()(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="already registered"):

        @rpc.method()
        async def subtract() -> None:
            pass


async def test_guards_and_rate_limits_per_method() -> None:
    from gobstopper.messages import ACCESS_DENIED, RATE_LIMITED, all_of, any_of, equals, has

    guarded = RPC()

    @guarded.method(
        requires=all_of(has("user"), any_of(equals("role", "admin"), equals("role", "ops")))
    )
    async def restart() -> str:
        return "restarting"

    @guarded.method(limit=2, period=60)
    async def ping() -> str:
        return "pong"

    request = '{"jsonrpc":"2.0","method":"%s","id":1}'
    async with served(guarded) as ws, served(guarded) as other, served(guarded) as anonymous:

        async def ask(conn: Any, method: str) -> Any:
            return await conn.ask(request % method)

        assert (await ask(ws, "restart"))["error"]["code"] == ACCESS_DENIED  # no user yet
        ws.ws.state.user, ws.ws.state.role = "ann", "viewer"
        assert (await ask(ws, "restart"))["error"]["code"] == ACCESS_DENIED
        ws.ws.state.role = "ops"
        assert (await ask(ws, "restart"))["result"] == "restarting"
        assert (await ask(anonymous, "restart"))["error"]["code"] == ACCESS_DENIED

        assert [(await ask(ws, "ping")).get("result") for _ in range(2)] == ["pong", "pong"]
        third = await ask(ws, "ping")
        assert third["error"] == {
            "code": RATE_LIMITED,
            "message": "Rate limit exceeded",
            "data": "ping",
        }
        assert (await ask(other, "ping"))["result"] == "pong"  # per connection
