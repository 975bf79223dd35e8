"""The echo load generator: N connections, each keeping a window of messages in flight.

Every connection sends ``window`` text messages of one size, then one more each time one
comes back, so ``window`` are always on their way. The server echoes them in order, so
the round-trip time of a message is its receipt time minus the send time of the oldest
message still out on that connection (a FIFO of send times: nothing to parse).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .loadgen import _disconnect, _factory, _percentile
from .servers import ServerProcess, machine_busy_seconds

__all__ = ["EchoResult", "EchoSettings", "measure_echo"]

_TEXT = WSMsgType.TEXT
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE

CONNECT_TIMEOUT = 30.0
DRAIN_TIMEOUT = 5.0


class Shared:
    """Counters the connections of one run share."""

    __slots__ = ("completed", "measuring", "samples", "sending", "stopping")

    def __init__(self) -> None:
        self.completed = 0  # round trips, over all connections
        self.sending = False
        self.measuring = False
        self.stopping = False
        self.samples: list[int] = []  # round-trip times in ns, while measuring


class EchoClient(WSListener):
    """One connection: sends, counts what comes back, times each round trip."""

    def __init__(self, shared: Shared, payload: bytes, window: int) -> None:
        super().__init__()
        self.shared = shared
        self.payload = payload
        self.size = len(payload)
        self.window = window
        self.transport: WSTransport | None = None
        self.sent_at: deque[int] = deque()
        self.partial = 0  # bytes of a fragmented message received so far
        self.wrong_size = 0
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        for _ in range(self.window - len(self.sent_at)):
            self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at.append(time.perf_counter_ns())
        self.transport.send(_TEXT, self.payload)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        size = frame.payload_size
        if not (frame.fin and size == self.size and not self.partial):
            kind = frame.msg_type
            if kind == _CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            if kind not in (_TEXT, _CONTINUATION):
                return  # pings are answered by picows; binary is unexpected
            if not frame.fin:
                self.partial += size
                return
            if self.partial + size != self.size:
                self.wrong_size += 1
            self.partial = 0
        if not self.sent_at:
            self.wrong_size += 1  # more messages back than were sent
            return
        started = self.sent_at.popleft()
        shared = self.shared
        shared.completed += 1
        if shared.measuring:
            shared.samples.append(time.perf_counter_ns() - started)
        if shared.sending:
            self._send()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.shared.stopping:
            self.closed = True


@dataclass(frozen=True)
class EchoSettings:
    """How each run is made."""

    window: int = 16  # messages in flight per connection
    warmup: float = 0.5  # seconds before measuring
    duration: float = 3.0  # seconds measured
    pin: bool = False  # server on core 1, load generator on core 0


@dataclass
class EchoResult:
    server: str
    connections: int
    size: int
    repeat: int
    messages_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    lost: int = 0  # messages sent and never echoed back
    wrong_size: int = 0
    closed: int = 0  # connections closed by the server or the network
    bench_cpu: float = 0.0  # share of one core used by this process while measuring
    server_cpu: float | None = None
    other_cpu: float | None = None
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None


async def measure_echo(
    server: ServerProcess, connections: int, size: int, settings: EchoSettings
) -> EchoResult:
    """Connect, echo for ``warmup + duration`` seconds, drain, disconnect."""
    result = EchoResult(server="", connections=connections, size=size, repeat=0)
    shared = Shared()
    payload = b"x" * size
    clients = [EchoClient(shared, payload, settings.window) for _ in range(connections)]
    url = f"ws://127.0.0.1:{server.port}/ws/echo"
    try:
        await asyncio.wait_for(
            asyncio.gather(*(ws_connect(_factory(c), url) for c in clients)), CONNECT_TIMEOUT
        )
        shared.sending = True
        for client in clients:
            client.start()
        await asyncio.sleep(settings.warmup)

        done0, cpu0, t0 = shared.completed, time.process_time(), time.perf_counter()
        server_cpu0, busy0 = server.cpu_seconds(), machine_busy_seconds()
        shared.measuring = True
        await asyncio.sleep(settings.duration)
        shared.measuring = False
        done1, cpu1, t1 = shared.completed, time.process_time(), time.perf_counter()
        server_cpu1, busy1 = server.cpu_seconds(), machine_busy_seconds()
        shared.sending = False

        deadline = time.monotonic() + DRAIN_TIMEOUT
        while any(c.sent_at for c in clients) and time.monotonic() < deadline:
            if all(c.closed for c in clients if c.sent_at):
                break
            await asyncio.sleep(0.01)

        elapsed = t1 - t0
        result.messages_per_s = (done1 - done0) / elapsed
        result.bench_cpu = (cpu1 - cpu0) / elapsed
        result.server_cpu = (server_cpu1 - server_cpu0) / elapsed
        if busy0 is not None and busy1 is not None:
            others = (busy1 - busy0) / elapsed - result.server_cpu - result.bench_cpu
            result.other_cpu = max(0.0, others)
        samples = sorted(shared.samples)
        result.latency_samples = len(samples)
        if samples:
            result.p50_ms = _percentile(samples, 0.50)
            result.p99_ms = _percentile(samples, 0.99)
        result.lost = sum(len(c.sent_at) for c in clients)
        result.wrong_size = sum(c.wrong_size for c in clients)
        result.closed = sum(c.closed for c in clients)
        return result
    finally:
        shared.sending = False
        shared.stopping = True
        await _disconnect([c.transport for c in clients])
