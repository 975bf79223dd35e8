"""The connection load generators: many idle connections, and connection churn.

Memory: open N connections, make one round trip on each (so every handler is running),
then read the server's resident memory; its growth over N is the cost of an idle
connection. Churn: a few loops that each open a connection, close it with a close
handshake and start again, for a fixed time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .loadgen import Clocks, _disconnect, _factory, _percentile, record_cpu
from .servers import ServerProcess

__all__ = ["ConnResult", "ConnSettings", "measure_churn", "measure_memory"]

_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
PING = b"p" * 32
CONNECT_BATCH = 100  # connections opened at once: below every server's listen backlog
ROUND_TRIP_TIMEOUT = 30.0
CHURN_STEP_TIMEOUT = 5.0


@dataclass(frozen=True)
class ConnSettings:
    """How each run is made."""

    connections: int = 10_000  # idle connections for the memory figure
    churn_loops: int = 8  # connections being opened or closed at any time
    churn_seconds: float = 2.0  # measured
    warmup: float = 0.3  # seconds of churn before measuring
    pin: bool = False


@dataclass
class ConnResult:
    server: str
    repeat: int
    connections: int = 0  # idle connections held open
    rss_per_connection: float | None = None  # bytes
    rss_growth: int | None = None  # bytes, for all of them
    open_rate: float | None = None  # connections opened per second, filling the server
    churn_per_s: float | None = None  # connections opened and closed per second
    churn_p50_ms: float | None = None  # one connection's open + close
    churn_p99_ms: float | None = None
    failed: int = 0  # connections refused, dropped or timed out
    server_cpu: float | None = None  # share of one core while churning
    bench_cpu: float | None = None
    other_cpu: float | None = None
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None


class Idle(WSListener):
    """A connection that makes one round trip, then stays quiet."""

    def __init__(self, answered: asyncio.Event, counter: list[int], total: int) -> None:
        super().__init__()
        self.answered = answered
        self.counter = counter
        self.total = total
        self.transport: WSTransport | None = None
        self.done = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(_TEXT, PING)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if not self.done:
            self.done = True
            self.counter[0] += 1
            if self.counter[0] == self.total:
                self.answered.set()


async def measure_memory(server: ServerProcess, settings: ConnSettings) -> ConnResult:
    """Open ``settings.connections`` idle connections; report the server's memory each."""
    result = ConnResult(server="", repeat=0)
    url = f"ws://127.0.0.1:{server.port}/ws/echo"
    # One connection first: what the server loads or allocates on its first connection
    # is not a cost per connection.
    warm = asyncio.Event()
    first = Idle(warm, [0], 1)
    await asyncio.wait_for(ws_connect(_factory(first), url), ROUND_TRIP_TIMEOUT)
    await asyncio.wait_for(warm.wait(), ROUND_TRIP_TIMEOUT)
    await _disconnect([first.transport])

    n = settings.connections
    answered, counter = asyncio.Event(), [0]
    clients = [Idle(answered, counter, n) for _ in range(n)]
    rss0 = server.rss_bytes()
    started = time.perf_counter()
    try:
        for start in range(0, n, CONNECT_BATCH):
            batch = clients[start : start + CONNECT_BATCH]
            await asyncio.wait_for(
                asyncio.gather(*(ws_connect(_factory(c), url) for c in batch)),
                ROUND_TRIP_TIMEOUT,
            )
        await asyncio.wait_for(answered.wait(), ROUND_TRIP_TIMEOUT)
        result.open_rate = n / (time.perf_counter() - started)
        growth = server.rss_bytes() - rss0
        result.connections = n
        result.rss_growth = growth
        result.rss_per_connection = growth / n
        result.failed = sum(
            1 for c in clients if c.transport is None or c.transport.is_disconnected
        )
        return result
    finally:
        await _disconnect([c.transport for c in clients])


_CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])  # masked (by zeros), 1000


class ChurnClient(asyncio.Protocol):
    """One connection of the churn: upgrade, close handshake, wait for the server's end.

    A bare protocol rather than picows: it costs the load generator a fraction of a full
    client per connection, so the servers, not the load generator, set the pace. It
    checks what matters here: a 101 answer, and a close frame back.
    """

    def __init__(self, request: bytes, done: asyncio.Future[bool]) -> None:
        self.request = request
        self.done = done
        self.buffer = b""
        self.upgraded = False
        self.closed_by_server = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self._finish(False)
                return
            self.upgraded = True
            self.buffer = rest
            assert self.transport is not None
            self.transport.write(_CLOSE_FRAME)
        if self.buffer[:1] == b"\x88":
            self.closed_by_server = True  # the server's close frame: now it ends the TCP

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(self.upgraded and self.closed_by_server)

    def _finish(self, ok: bool) -> None:
        if not self.done.done():
            self.done.set_result(ok)
        if not ok and self.transport is not None:
            self.transport.abort()


def _upgrade_request(port: int) -> bytes:
    return (
        f"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def measure_churn(server: ServerProcess, settings: ConnSettings) -> ConnResult:
    """Open and close connections from ``churn_loops`` loops for a fixed time."""
    result = ConnResult(server="", repeat=0)
    state = {"measuring": False, "stop": False, "done": 0, "failed": 0}
    samples: list[int] = []

    event_loop = asyncio.get_running_loop()
    request = _upgrade_request(server.port)

    async def loop() -> None:
        while not state["stop"]:
            t0 = time.perf_counter_ns()
            done: asyncio.Future[bool] = event_loop.create_future()
            client = ChurnClient(request, done)
            transport: asyncio.BaseTransport | None = None
            try:
                transport, _ = await event_loop.create_connection(
                    lambda c=client: c,  # type: ignore[misc]
                    "127.0.0.1",
                    server.port,
                )
                ok = await asyncio.wait_for(done, CHURN_STEP_TIMEOUT)
            except Exception:  # refused, reset or timed out
                ok = False
            if transport is not None and not ok:
                transport.abort()
            if not ok:
                if state["measuring"]:
                    state["failed"] += 1
                continue
            if state["measuring"]:
                state["done"] += 1
                samples.append(time.perf_counter_ns() - t0)

    tasks = [asyncio.ensure_future(loop()) for _ in range(settings.churn_loops)]
    try:
        await asyncio.sleep(settings.warmup)
        start = Clocks.read(server)
        state["measuring"] = True
        await asyncio.sleep(settings.churn_seconds)
        state["measuring"] = False
        end = Clocks.read(server)
    finally:
        state["stop"] = True
        await asyncio.wait(tasks, timeout=2 * CHURN_STEP_TIMEOUT + 1)
        for task in tasks:
            task.cancel()
    elapsed = record_cpu(result, start, end)
    result.churn_per_s = state["done"] / elapsed
    result.failed = state["failed"]
    samples.sort()
    if samples:
        result.churn_p50_ms = _percentile(samples, 0.50)
        result.churn_p99_ms = _percentile(samples, 0.99)
    return result
