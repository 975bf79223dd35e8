"""The client's status, life-cycle hooks and the words of its timeouts, against the
server played by hand (no sockets): the same statuses and hooks as the browser client."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gobstopper.client import (
    Client,
    ClientTimeout,
    ConnectTimeout,
    Disconnect,
    LinkSocket,
    Status,
)
from gobstopper.client.link import describe_error
from gobstopper.messages import protocol

from .client_server import FakeServer, answer, connected, message, subscribed


class Recorder:
    """Hooks that write down what they were called with, and wake a waiting test."""

    def __init__(self) -> None:
        self.statuses: list[Status] = []
        self.reasons: list[tuple[Status, Any]] = []  # (status, close_reason) of on_status
        self.opened: list[Any] = []
        self.closed: list[Disconnect] = []
        self._changed = asyncio.Event()

    def on_status(self, status: Status, close_reason: Any) -> None:
        self.statuses.append(status)
        self.reasons.append((status, close_reason))
        self._changed.set()

    def on_open(self, info: Any) -> None:
        self.opened.append(info)
        self._changed.set()

    async def on_close(self, event: Disconnect) -> None:  # an async hook: run as a task
        self.closed.append(event)
        self._changed.set()

    async def until(self, predicate: Any) -> None:
        async def waiting() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiting(), 2)  # asyncio.timeout is Python 3.11+


def hooked(recorder: Recorder, **options: Any) -> Client:
    return Client(
        "ws://fake/rpc",
        timeout=2,
        backoff=0.001,
        max_backoff=0.002,
        on_open=recorder.on_open,
        on_close=recorder.on_close,
        on_status=recorder.on_status,
        **options,
    )


async def test_status_and_hooks_follow_a_drop_and_a_reconnection(server: FakeServer) -> None:
    seen = Recorder()
    client = hooked(seen)
    try:
        assert client.status is Status.IDLE and not client.connected
        sock = await connected(client, server)
        assert client.status is Status.OPEN and client.connected
        assert seen.statuses == [Status.CONNECTING, Status.OPEN]
        assert seen.opened == [{"id": "c1"}] and seen.closed == []

        sock.drop()
        await seen.until(lambda: seen.closed)
        assert client.status is Status.RECONNECTING and not client.connected
        event = seen.closed[0]
        assert event.attempt == 1 and event.code is None and 0 < event.delay <= 0.002
        assert "closed the connection" in event.cause

        await connected(client, server)
        await client.wait_open(1)  # open already: returns at once
        assert seen.statuses == [Status.CONNECTING, Status.OPEN, Status.RECONNECTING, Status.OPEN]
        assert len(seen.opened) == 2
    finally:
        await client.close()
    await asyncio.wait_for(client._hook_tasks.wait(), 2)  # an async hook close() set off
    assert client.status is Status.CLOSED and seen.statuses[-1] is Status.CLOSED
    assert len(seen.closed) == 1  # close() is no drop


async def test_each_drop_reports_its_own_close_reason(server: FakeServer) -> None:
    """The server's rpc.close belongs to the drop that follows it, not to later ones."""
    seen = Recorder()
    client = hooked(seen)
    expired = (4001, "token expired")
    try:
        sock = await connected(client, server)
        closing = {"code": expired[0], "reason": expired[1]}
        sock.push(protocol.event_push(protocol.CLOSING_EVENT, closing, None))
        sock.drop()  # after the event: the client reads them in this order
        await seen.until(lambda: len(seen.closed) == 1)
        sock = await connected(client, server)
        assert client.info == {"id": "c1"}
        sock.drop()  # a drop with no rpc.close before it
        await seen.until(lambda: len(seen.closed) == 2)
        assert client.info is None and client.id is None  # as in the browser client
        await connected(client, server)
    finally:
        await client.close()
    assert [e.close_reason for e in seen.closed] == [expired, None]
    open_, again = Status.OPEN, Status.RECONNECTING
    assert seen.reasons == [
        (Status.CONNECTING, None),
        (open_, None),
        (again, expired),
        (open_, None),
        (again, None),
        (open_, None),
        (Status.CLOSED, None),
    ]
    assert client.close_reason == expired  # the last one the server sent, kept


async def test_a_drop_by_the_client_itself_is_worded_so(server: FakeServer) -> None:
    """A renewal the server could not do now (INTERNAL_ERROR): the client closes that
    connection and starts over; the cause does not blame the server."""
    seen = Recorder()
    client = hooked(seen)
    try:
        sock = await connected(client, server)
        await subscribed(client, sock, "news", {})
        sock.drop()
        await seen.until(lambda: len(seen.closed) == 1)
        assert seen.closed[0].cause.startswith("the server closed the connection")
        new = await server.accept()
        found = await new.renewal(1)
        unavailable = protocol.RPCError(protocol.INTERNAL_ERROR, "Internal error", "later")
        new.push(protocol.error(found["news"]["id"], unavailable))
        new.push(answer(found[protocol.INFO], {"id": "c2"}))
        await seen.until(lambda: len(seen.closed) == 2)
        assert seen.closed[1].cause.startswith("the client closed the connection")
        await connected(client, server, subscriptions=1)
    finally:
        await client.close()


async def test_the_event_loop_ending_with_the_client_open_calls_no_hook(
    server: FakeServer,
) -> None:
    """The loop's tasks cancelled with the client open (``asyncio.run`` returning before
    ``close()``): no drop, no failed attempt, no hook."""
    seen = Recorder()
    client = hooked(seen)
    await connected(client, server)
    runner = client._link._runner
    assert runner is not None
    runner.cancel()  # what the end of asyncio.run does to it
    await asyncio.wait((runner,), timeout=2)
    assert runner.cancelled()
    await asyncio.wait_for(client._hook_tasks.wait(), 2)
    assert seen.statuses == [Status.CONNECTING, Status.OPEN] and seen.closed == []
    assert client._link.failures == 0
    await client.close()


async def test_a_hook_that_raises_is_logged_and_the_client_goes_on(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def bad_async(info: Any) -> None:
        raise ValueError("async hook broke")

    def bad_sync(status: Status, close_reason: Any) -> None:
        raise ValueError("sync hook broke")

    client = Client("ws://fake/rpc", timeout=2, on_open=bad_async, on_status=bad_sync)
    try:
        with caplog.at_level(logging.ERROR, "gobstopper.client"):
            sock = await connected(client, server)
            call = asyncio.ensure_future(client.call("add", 1, 2))
            sock.push(answer(await sock.request("add"), 3))
            assert await call == 3
        assert client.status is Status.OPEN
        logged = " ".join(str(r.exc_info[1]) for r in caplog.records if r.exc_info)
        assert "sync hook broke" in logged and "async hook broke" in logged
    finally:
        await client.close()


async def test_wait_open_says_why_it_gave_up(server: FakeServer) -> None:
    client = Client("ws://fake/rpc", timeout=2, backoff=0.001, max_backoff=0.002)
    with pytest.raises(RuntimeError, match="connect"):
        await client.wait_open(0.1)
    sock = await connected(client, server)
    sock.drop()
    await server.accept()  # the next connection opens, but its renewal is never answered
    with pytest.raises(ClientTimeout) as info:
        await client.wait_open(0.05)
    text = str(info.value)
    assert "not open within 0.05s" in text and "ws://fake/rpc" in text
    assert "reconnecting" in text and "1 attempt failed" in text
    assert info.value.status == "reconnecting" and info.value.timeout == 0.05
    closing = asyncio.ensure_future(client.wait_status(Status.OPEN))
    await client.close()
    with pytest.raises(ConnectionError, match="closed"):
        await closing


async def test_a_call_and_a_subscriber_that_time_out_say_so(server: FakeServer) -> None:
    client = Client("ws://fake/rpc", timeout=0.2, backoff=0.001, max_backoff=0.002)
    try:
        sock = await connected(client, server)
        with pytest.raises(ClientTimeout, match=r"no answer to 'slow' within 0\.2s"):
            await client.call("slow")
        sub, _ = await subscribed(client, sock, "news", {})
        sock.push(message("news", 1))
        assert (await sub.get(1)).data == 1
        with pytest.raises(TimeoutError) as open_info:  # a ClientTimeout is a TimeoutError
            await sub.get(0.01)
        assert "no message on 'news' within 0.01s" in str(open_info.value)
        assert "reconnecting" not in str(open_info.value)

        sock.drop()
        new = await server.accept()  # connected again, its renewal unanswered
        await new.request(protocol.INFO)
        with pytest.raises(ClientTimeout) as info:
            await sub.get(0.01)
        assert "when the wait ended the client was reconnecting" in str(info.value)
        assert "the server closed the connection" in str(info.value)
    finally:
        await client.close()


def refusing(error: BaseException) -> Any:
    """A ``dial`` whose every attempt fails with ``error``."""

    @asynccontextmanager
    async def dial(url: str, headers: dict[str, str] | None) -> AsyncIterator[LinkSocket]:
        raise error
        yield  # pragma: no cover - never reached

    return dial


async def test_connect_timeout_names_the_url_the_attempts_and_the_last_error() -> None:
    seen = Recorder()
    refused = ConnectionRefusedError(111, "Connect call failed")
    client = hooked(seen, dial=refusing(refused))
    client.timeout = 0.1
    with pytest.raises(ConnectTimeout) as info:
        await client.connect()
    error = info.value
    assert isinstance(error, TimeoutError) and error.url == "ws://fake/rpc"
    assert error.attempts >= 1 and error.last_error is not None
    assert "ConnectionRefusedError" in error.last_error
    text = str(error)
    assert text.startswith("no connection to ws://fake/rpc within 0.1s: ")
    assert f"{error.attempts} attempt" in text and "Connect call failed" in text
    assert seen.statuses[:2] == [Status.CONNECTING, Status.RECONNECTING]
    assert seen.statuses[-1] is Status.CLOSED and seen.opened == []
    assert [e.attempt for e in seen.closed] == list(range(1, len(seen.closed) + 1))


def test_describe_error_names_the_refusal() -> None:
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response

    refused = InvalidStatus(Response(403, "Forbidden", Headers(), b"no token\n"))
    assert (
        describe_error(refused) == "the server refused the handshake: HTTP 403 Forbidden: no token"
    )
    dns = socket.gaierror(-2, "Name or service not known")
    assert describe_error(dns).startswith("DNS lookup failed:")
    plain = ConnectionRefusedError(111, "refused")
    assert describe_error(plain) == "ConnectionRefusedError: [Errno 111] refused"
    assert describe_error(TimeoutError()) == "the attempt timed out"


def test_client_timeouts_pickle_with_their_message_and_attributes() -> None:
    import pickle

    plain = ClientTimeout("waited (ws://h/rpc)", url="ws://h/rpc", timeout=1.5, status="open")
    connect = ConnectTimeout(
        "no connection",
        url="ws://h/rpc",
        timeout=2.0,
        status="reconnecting",
        attempts=3,
        last_error="ConnectionRefusedError: refused",
    )
    for error in (plain, connect):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert vars(copy) == vars(error)
    assert pickle.loads(pickle.dumps(connect)).attempts == 3


def test_a_client_timeout_is_caught_as_asyncio_and_builtin_timeouts() -> None:
    # ``except asyncio.TimeoutError`` (a class of its own on Python 3.10) and
    # ``except TimeoutError`` both catch the client's timeouts.
    from gobstopper.errors import ClientTimeout, ConnectTimeout

    for error in (
        ClientTimeout("waited", url="ws://h/rpc", timeout=1.0, status="open"),
        ConnectTimeout(
            "no connection",
            url="ws://h/rpc",
            timeout=1.0,
            status="connecting",
            attempts=2,
            last_error=None,
        ),
    ):
        with pytest.raises(asyncio.TimeoutError):
            raise error
        with pytest.raises(TimeoutError):
            raise error
