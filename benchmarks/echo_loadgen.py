"""The echo load generator: N connections, each keeping a window of messages in flight.

Every connection sends ``window`` text messages of one size, then one more each time one
comes back, so ``window`` are always on their way (``round_trips.py``). The server
echoes them in order, so the round-trip time of a message is its receipt time minus the
send time of the oldest message still out on that connection: nothing to parse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from picows import WSFrame, WSMsgType, WSTransport

from .round_trips import RoundTripClient, RoundTripSettings, Shared, measure_round_trips
from .servers import ServerProcess

__all__ = ["EchoResult", "EchoSettings", "measure_echo"]

_TEXT = WSMsgType.TEXT
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE

CONNECT_TIMEOUT = 30.0


class EchoClient(RoundTripClient):
    """One connection: sends, counts what comes back, times each round trip."""

    def __init__(self, shared: Shared, payload: bytes, window: int) -> None:
        super().__init__(shared, window)
        self.payload = payload
        self.size = len(payload)
        self.partial = 0  # bytes of a fragmented message received so far

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
                self.wrong += 1
            self.partial = 0
        if not self.sent_at:
            self.wrong += 1  # more messages back than were sent
            return
        started = self.sent_at.popleft()
        shared = self.shared
        shared.completed += 1
        if shared.measuring:
            shared.samples.append(time.perf_counter_ns() - started)
        if shared.sending:
            self._send()


@dataclass(frozen=True)
class EchoSettings(RoundTripSettings):
    """How each run is made: ``window`` messages in flight per connection."""

    duration: float = 3.0  # seconds measured


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
    result.messages_per_s = await measure_round_trips(
        server, url, shared, clients, settings, result, CONNECT_TIMEOUT
    )
    result.wrong_size = sum(c.wrong for c in clients)
    return result
