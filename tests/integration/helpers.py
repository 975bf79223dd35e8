"""Small clients for the integration tests, and waiting on what another process does."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from .servers import Server

#: How long a test waits for something a server should do promptly.
WAIT = 10.0
#: The pause between two looks at another process's state (no event crosses that
#: boundary, so a wait there polls, always against a deadline).
POLL = 0.02


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _request(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> HTTPResult:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return HTTPResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


async def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> HTTPResult:
    return await asyncio.to_thread(_request, port, method, path, body, headers or {})


async def recv_json(ws: ClientConnection, timeout: float = WAIT) -> Any:
    """The next message on ``ws``, parsed as JSON; fails after ``timeout`` seconds."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def wait_until(
    check: Callable[[], Any],
    timeout: float = WAIT,
    what: str | Callable[[], str] | None = None,
) -> Any:
    """Wait until ``check()`` (a plain or an async function) returns something truthy,
    and return it; fail after ``timeout`` seconds, saying ``what`` was not true."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what or repr(check)
            raise AssertionError(f"not true within {timeout:g}s: {described}")
        await asyncio.sleep(POLL)


async def stats(server: Server) -> dict[str, Any]:
    """The test app's counters, from its ``GET /stats`` route."""
    result = await http_request(server.port, "GET", "/stats")
    assert result.status == 200, result.body
    data: dict[str, Any] = result.json()
    return data


async def wait_stats(
    server: Server, check: Callable[[dict[str, Any]], bool], timeout: float = WAIT
) -> dict[str, Any]:
    """Wait until the test app's counters satisfy ``check``, and return them."""
    last: dict[str, Any] = {}

    async def matched() -> dict[str, Any] | None:
        nonlocal last
        last = await stats(server)
        return last if check(last) else None

    return await wait_until(  # type: ignore[no-any-return]
        matched, timeout, lambda: f"the counters never satisfied the check: {last}"
    )
