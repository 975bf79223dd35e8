"""The WebSocket's own logic against a fake transport; tests/integration covers real servers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from gobstopper import (
    CloseCode,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Message,
    MessageTooBig,
    MessageType,
    WebSocketState,
)
from gobstopper.transport.base import BYTES, CLOSE, TEXT

from .fake_transport import make


async def test_receive_kinds_and_close_then_raise() -> None:
    ws, t = make()
    await ws.accept()
    t.push(TEXT, "hi")
    t.push(BYTES, b"\x01")
    t.push(CLOSE, 1000)
    assert await ws.receive() == Message(MessageType.TEXT, "hi")
    assert await ws.receive_bytes() == b"\x01"
    msg = await ws.receive()
    assert msg.type is MessageType.CLOSE and msg.code == 1000
    assert ws.connection_state is WebSocketState.CLOSED and ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK) as info:
        await ws.receive()
    assert info.value.code == 1000


async def test_async_for_ends_on_normal_close_and_raises_on_error_close() -> None:
    ws, t = make()
    await ws.accept()
    for word in ("a", "b"):
        t.push(TEXT, word)
    t.push(CLOSE, 1001)
    assert [m.text async for m in ws] == ["a", "b"]

    ws, t = make()
    await ws.accept()
    t.push(TEXT, "a")
    t.push(-1, 1006)  # the TCP connection dropped
    got = []
    with pytest.raises(ConnectionClosedError) as info:
        async for text in ws.iter_text():
            got.append(text)
    assert got == ["a"] and info.value.code == CloseCode.ABNORMAL_CLOSURE


async def test_reading_stops_when_buffer_is_full_and_resumes() -> None:
    ws, t = make(receive_queue_messages=3)
    await ws.accept()
    for i in range(10):
        t.push(TEXT, str(i))
    # Three buffered: no fourth receive was started, so the server stops reading
    # and TCP backpressure slows the client.
    assert t.receives_started == 3
    assert await ws.receive_text() == "0"
    assert t.receives_started == 4
    assert [await ws.receive_text() for _ in range(9)] == [str(i) for i in range(1, 10)]


async def test_inbound_over_limit_closes_1009_and_handler_sees_it() -> None:
    ws, t = make(max_message_bytes=10, send_chunk_bytes=5)
    await ws.accept()
    t.push(TEXT, "é" * 5)  # 10 bytes: at the limit
    assert await ws.receive_text() == "é" * 5
    t.push(TEXT, "é" * 6)  # 12 bytes
    with pytest.raises(ConnectionClosedError) as info:
        await ws.receive_text()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    await asyncio.wait_for(t.closed_event.wait(), 1)
    assert t.closed == (1009, "message too big")


async def test_outbound_over_limit_raises_before_sending_and_stays_open() -> None:
    ws, t = make(max_message_bytes=10, send_chunk_bytes=5)
    await ws.accept()
    with pytest.raises(MessageTooBig) as info:
        await ws.send_text("é" * 6)
    assert (info.value.size, info.value.limit) == (12, 10)
    with pytest.raises(MessageTooBig):
        await ws.send_bytes(memoryview(b"x" * 11))
    assert t.sent == []
    await ws.send_text("ok")
    assert t.sent == ["ok"] and ws.connection_state is WebSocketState.CONNECTED


async def test_send_after_peer_left_raises_connection_closed() -> None:
    ws, t = make()
    await ws.accept()
    t.push(CLOSE, 1005)
    with pytest.raises(ConnectionClosed) as info:
        await ws.send_text("late")
    assert info.value.code == 1005
    assert await ws.wait_closed() == 1005

    ws, t = make()
    await ws.accept()
    t.peer_gone = True
    with pytest.raises(ConnectionClosedError):
        await ws.send_json({"x": 1})
    assert ws.closed


async def test_wait_closed_wakes_on_departure() -> None:
    ws, t = make()
    await ws.accept()
    waiter = asyncio.ensure_future(ws.wait_closed())
    done, _ = await asyncio.wait([waiter], timeout=0.05)
    assert not done
    t.push(CLOSE, 1000)
    assert await asyncio.wait_for(waiter, 1) == 1000


async def test_concurrent_receive_is_an_error() -> None:
    ws, _ = make()
    await ws.accept()
    first = asyncio.ensure_future(ws.receive())
    done, _ = await asyncio.wait([first], timeout=0.05)  # first is now waiting
    assert not done
    with pytest.raises(RuntimeError, match="already waiting"):
        await ws.receive()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_use_before_accept_is_an_error() -> None:
    ws, _ = make()
    with pytest.raises(RuntimeError, match="accept"):
        await ws.send_text("x")
    with pytest.raises(RuntimeError, match="accept"):
        await ws.receive()


@pytest.mark.parametrize(("code", "status"), [(403, 403), (401, 401), (503, 503), (1000, 403)])
async def test_close_before_accept_rejects_with_http_status(code: int, status: int) -> None:
    ws, t = make()
    await ws.close(code)
    assert t.rejected == status and ws.closed


async def test_close_validates_code_and_reason() -> None:
    ws, t = make()
    await ws.accept()
    for bad in (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000):
        with pytest.raises(ValueError, match="cannot be sent"):
            await ws.close(bad)
    with pytest.raises(ValueError, match="123 bytes"):
        await ws.close(1000, "x" * 124)
    await ws.close(4000, "done")
    assert t.closed == (4000, "done")
    await ws.close()  # closing twice is harmless
    assert t.closed == (4000, "done")


async def test_send_stream_sources() -> None:
    ws, t = make(max_message_bytes=100, send_chunk_bytes=10)
    await ws.accept()
    payload = bytes(range(95))
    assert await ws.send_stream(payload) == 10
    assert [len(c) for c in t.sent] == [10] * 9 + [5] and b"".join(t.sent) == payload  # type: ignore[arg-type]

    t.sent.clear()
    assert await ws.send_stream(io.BytesIO(payload), chunk_size=50) == 2
    assert b"".join(t.sent) == payload  # type: ignore[arg-type]

    class AsyncFile:
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        async def read(self, n: int) -> bytes:
            return self._buf.read(n)

    t.sent.clear()
    assert await ws.send_stream(AsyncFile(payload)) == 10

    async def pieces() -> AsyncIterator[bytes]:
        yield payload[:25]  # split into 10 + 10 + 5
        yield payload[25:]

    t.sent.clear()
    await ws.send_stream(pieces())
    assert [len(c) for c in t.sent] == [10, 10, 5, 10, 10, 10, 10, 10, 10, 10] and b"".join(
        t.sent
    ) == payload  # type: ignore[arg-type]

    assert await ws.send_stream(b"") == 0
    with pytest.raises(TypeError, match="yielded str"):
        await ws.send_stream(["text"])
    with pytest.raises(TypeError, match="cannot send a int"):
        await ws.send_stream(42)
    with pytest.raises(ValueError, match="chunk_size=101"):
        await ws.send_stream(payload, chunk_size=101)


async def test_malformed_json_raises_value_error_and_keeps_the_connection() -> None:
    ws, t = make()
    await ws.accept()
    t.push(TEXT, "{oops")
    t.push(TEXT, '{"ok": 1}')
    with pytest.raises(ValueError):
        await ws.receive_json()
    assert await ws.receive_json() == {"ok": 1}


async def test_receive_wait_for_timeouts_lose_no_message() -> None:
    ws, t = make()
    await ws.accept()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.receive(), 0.01)
    t.push(TEXT, "after timeout")
    assert await asyncio.wait_for(ws.receive_text(), 1) == "after timeout"
