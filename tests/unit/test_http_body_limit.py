"""HTTP_MAX_BODY_BYTES in-process: its default, the argument, the environment, bad values,
and the reading that stops at the limit (the real servers' side is in
tests/integration/test_http_body_limit.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gobstopper import ConfigError, Gobstopper, HTTPError, Request
from gobstopper.envcheck import unknown_variables
from gobstopper.testing import AsyncTestClient
from gobstopper.transport.asgi import ASGIHTTPExchange

MiB = 1024 * 1024


def make_app(**kwargs: Any) -> Gobstopper:
    app = Gobstopper(**kwargs)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/json")
    async def as_json(request: Request) -> Any:
        return await request.json()

    return app


def test_the_default_is_one_mib() -> None:
    assert Gobstopper(environ={}).config.http_max_body_bytes == MiB


async def test_a_body_over_the_default_gets_413() -> None:
    async with AsyncTestClient(make_app(environ={})) as client:
        ok = await client.post("/upload", body=b"x" * MiB)
        assert (ok.status, ok.json()) == (200, {"bytes": MiB})
        refused = await client.post("/upload", body=b"x" * (MiB + 1))
        assert refused.status == 413
        assert refused.text == "the request body is over the limit of 1048576 bytes"
        # request.json() and request.text() read through the same limit.
        assert (await client.post("/json", body=b" " * (MiB + 1))).status == 413


@pytest.mark.parametrize(
    "kwargs",
    [{"environ": {"HTTP_MAX_BODY_BYTES": "10"}}, {"environ": {}, "http_max_body_bytes": 10}],
    ids=["environment", "argument"],
)
async def test_the_limit_is_set_by_variable_or_argument(kwargs: dict[str, Any]) -> None:
    async with AsyncTestClient(make_app(**kwargs)) as client:
        assert (await client.post("/upload", body=b"x" * 10)).status == 200
        assert (await client.post("/upload", body=b"x" * 11)).status == 413


async def test_zero_means_no_limit() -> None:
    async with AsyncTestClient(make_app(environ={"HTTP_MAX_BODY_BYTES": "0"})) as client:
        big = await client.post("/upload", body=b"x" * (2 * MiB))
        assert (big.status, big.json()) == (200, {"bytes": 2 * MiB})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("1MB", "HTTP_MAX_BODY_BYTES='1MB' must be a whole number, 0 for no limit"),
        ("-1", "HTTP_MAX_BODY_BYTES='-1' must be a whole number, 0 for no limit"),
        ("", "HTTP_MAX_BODY_BYTES='' must be a whole number, 0 for no limit"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(env: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Gobstopper(environ={"HTTP_MAX_BODY_BYTES": env})
    assert str(raised.value) == message


def test_a_bad_argument_names_the_argument() -> None:
    with pytest.raises(ConfigError, match="http_max_body_bytes=-3"):
        Gobstopper(environ={}, http_max_body_bytes=-3)


def test_a_misspelt_name_is_reported() -> None:
    assert unknown_variables({"HTTP_MAX_BODY_SIZE": "5"}) == [
        ("HTTP_MAX_BODY_SIZE", "HTTP_MAX_BODY_BYTES")
    ]


async def test_reading_stops_at_the_first_chunk_over_the_limit() -> None:
    """The ASGI exchange asks for no chunk after the one that goes over."""
    chunks = [b"x" * 400] * 10
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": chunks[asked - 1], "more_body": asked < 10}

    async def send(message: Any) -> None: ...

    exchange = ASGIHTTPExchange(receive, send)
    with pytest.raises(HTTPError, match="over the limit of 1000 bytes"):
        await exchange.body(1000)
    assert asked == 3


async def test_a_route_that_takes_more_keeps_it_for_json_and_text() -> None:
    # body(limit=...) raised the limit for this route; json() after it reads the cached
    # body and must not refuse it under the default.
    app = Gobstopper(environ={"HTTP_MAX_BODY_BYTES": "10"})

    @app.post("/big")
    async def big(request: Request) -> Any:
        await request.body(limit=100)
        return await request.json()

    async with AsyncTestClient(app) as client:
        answer = await client.post("/big", body=b'{"text": "more than ten bytes"}')
        assert (answer.status, answer.json()) == (200, {"text": "more than ten bytes"})
