"""Round-trip load: N connections, each keeping a window of requests in flight.

Every connection sends ``window`` requests, then one more each time an answer comes
back, so ``window`` are always on their way. The server answers them in order, so the
round-trip time of an answer is its receipt time minus the send time of the oldest
request still out on that connection (a FIFO of send times). The echo load generator
(``echo_loadgen.py``) and the JSON-RPC one (``rpc_loadgen.py``) say what a request is
and how an answer is checked.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from picows import WSListener, WSTransport, ws_connect

from .loadgen import Clocks, _disconnect, _factory, record_cpu, record_latency
from .servers import ServerProcess

__all__ = ["RoundTripClient", "RoundTripSettings", "Shared", "measure_round_trips"]

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


class RoundTripClient(WSListener):
    """One connection: keeps ``window`` requests in flight. A subclass sends them
    (``_send``) and checks each answer (``on_ws_frame``), counting the bad ones in
    ``wrong``."""

    def __init__(self, shared: Shared, window: int) -> None:
        super().__init__()
        self.shared = shared
        self.window = window
        self.transport: WSTransport | None = None
        self.sent_at: deque[int] = deque()  # send times of the requests not yet answered
        self.wrong = 0
        self.closed = False  # by the server or the network, before the end of the run

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        for _ in range(self.window - len(self.sent_at)):
            self._send()

    def _send(self) -> None:
        raise NotImplementedError

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.shared.stopping:
            self.closed = True


@dataclass(frozen=True)
class RoundTripSettings:
    """How each round-trip run is made."""

    window: int = 16  # requests in flight per connection
    warmup: float = 0.5  # seconds before measuring
    duration: float = 2.0  # seconds measured
    pin: bool = False  # server on core 1, load generator on core 0


async def measure_round_trips(
    server: ServerProcess,
    url: str,
    shared: Shared,
    clients: Sequence[RoundTripClient],
    settings: RoundTripSettings,
    result: Any,
    connect_timeout: float,
) -> float:
    """Connect ``clients`` to ``url``, keep their windows full for ``warmup + duration``
    seconds, drain, disconnect.

    Sets ``result``'s CPU shares, latency, ``lost`` and ``closed``; returns the round
    trips per second while measuring.
    """
    try:
        await asyncio.wait_for(
            asyncio.gather(*(ws_connect(_factory(c), url) for c in clients)), connect_timeout
        )
        shared.sending = True
        for client in clients:
            client.start()
        await asyncio.sleep(settings.warmup)

        done0, start = shared.completed, Clocks.read(server)
        shared.measuring = True
        await asyncio.sleep(settings.duration)
        shared.measuring = False
        done1, end = shared.completed, Clocks.read(server)
        shared.sending = False

        deadline = time.monotonic() + DRAIN_TIMEOUT
        while any(c.sent_at for c in clients) and time.monotonic() < deadline:
            if all(c.closed for c in clients if c.sent_at):
                break
            await asyncio.sleep(0.01)

        elapsed = record_cpu(result, start, end)
        record_latency(result, shared.samples)
        result.lost = sum(len(c.sent_at) for c in clients)
        result.closed = sum(c.closed for c in clients)
        return (done1 - done0) / elapsed
    finally:
        shared.sending = False
        shared.stopping = True
        await _disconnect([c.transport for c in clients])
