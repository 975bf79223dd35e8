"""The message layer's load generators: JSON-RPC round trips, and channel fan-out.

Round trips: N connections to ``/rpc``, each keeping ``window`` requests
``{"jsonrpc": "2.0", "method": "add", "params": [i, 1], "id": i}`` in flight (JSON text
frames, or msgpack binary frames with ``?encoding=msgpack``); every answer is parsed and
checked (its id and its result), and timed against the send time of the oldest request
still out on its connection (answers come back in order).

Channel fan-out: the fan-out benchmark's load (``loadgen.py``) spoken in JSON-RPC. N
subscribers send ``rpc.subscribe`` (half of them ``news.sport``, half the pattern
``news.*``) and wait for the answers; one publisher keeps a window of requests
``publish("<sequence number>:<send time>")`` in flight, each of which the server
delivers to every subscriber as an ``rpc.message`` notification. The notification's
bytes are the same for every server, so a subscriber finds the 32 bytes of data at a
fixed place without parsing the JSON, and checks their order as ``loadgen.py`` does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from picows import WSFrame, WSMsgType, WSTransport, ws_connect

from .loadgen import (
    _RING_MASK,
    CONNECT_TIMEOUT,
    MESSAGE_BYTES,
    SAMPLE_MASK,
    Receiver,
    Room,
    RunResult,
    Sender,
    Settings,
    _connect_all,
    _disconnect,
    _factory,
    _send_and_measure,
)
from .round_trips import RoundTripClient, RoundTripSettings, Shared, measure_round_trips
from .servers import ServerProcess

__all__ = [
    "CHANNEL",
    "ENCODINGS",
    "PATTERN",
    "RPCResult",
    "RPCSettings",
    "measure_channel",
    "measure_rpc",
    "notification_bytes",
]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE

ENCODINGS = ("json", "msgpack")
CHANNEL = "news.sport"
PATTERN = "news.*"
SUBSCRIBE_TIMEOUT = 15.0

_msgpack_encode = msgspec.msgpack.Encoder().encode
_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "json": msgspec.json.Decoder().decode,
    "msgpack": msgspec.msgpack.Decoder().decode,
}


# -- round trips --------------------------------------------------------------------------


class Caller(RoundTripClient):
    """One connection: calls ``add(i, 1)``, checks each answer, times each round trip.

    ``wrong`` counts the answers that did not parse, or had the wrong id or result.
    """

    def __init__(self, shared: Shared, window: int, encoding: str) -> None:
        super().__init__(shared, window)
        self.binary = encoding == "msgpack"
        self.decode = _DECODERS[encoding]
        self.next_id = 0  # the id of the next request; answers come back in this order
        self.answered = 0  # the id of the next answer expected

    def _send(self) -> None:
        transport = self.transport
        assert transport is not None
        i = self.next_id
        self.next_id = i + 1
        self.sent_at.append(time.perf_counter_ns())
        if self.binary:
            request = {"jsonrpc": "2.0", "method": "add", "params": [i, 1], "id": i}
            transport.send(_BINARY, _msgpack_encode(request))
        else:
            transport.send(
                _TEXT, b'{"jsonrpc":"2.0","method":"add","params":[%d,1],"id":%d}' % (i, i)
            )

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            reply = self.decode(frame.get_payload_as_bytes()) if frame.fin else None
        except msgspec.DecodeError:
            reply = None
        if type(reply) is not dict:
            if frame.msg_type == _CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            self.wrong += 1
            return
        if not self.sent_at:
            self.wrong += 1  # more answers than requests
            return
        started = self.sent_at.popleft()
        expected = self.answered
        self.answered = expected + 1
        if reply.get("id") != expected or reply.get("result") != expected + 1:
            self.wrong += 1
        shared = self.shared
        shared.completed += 1
        if shared.measuring:
            shared.samples.append(time.perf_counter_ns() - started)
        if shared.sending:
            self._send()


#: How each round-trip run is made: ``window`` requests in flight per connection.
RPCSettings = RoundTripSettings


@dataclass
class RPCResult:
    server: str
    connections: int
    encoding: str
    repeat: int
    calls_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    lost: int = 0  # requests sent and never answered
    wrong: int = 0  # answers unparsable, or with the wrong id or result
    closed: int = 0  # connections closed by the server or the network
    bench_cpu: float = 0.0  # share of one core used by this process while measuring
    server_cpu: float | None = None
    other_cpu: float | None = None
    attempts: int = 1
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None


async def measure_rpc(
    server: ServerProcess, connections: int, encoding: str, settings: RPCSettings
) -> RPCResult:
    """Connect, call for ``warmup + duration`` seconds, drain, disconnect."""
    result = RPCResult(server="", connections=connections, encoding=encoding, repeat=0)
    shared = Shared()
    clients = [Caller(shared, settings.window, encoding) for _ in range(connections)]
    url = f"ws://127.0.0.1:{server.port}/rpc?encoding={encoding}"
    result.calls_per_s = await measure_round_trips(
        server, url, shared, clients, settings, result, CONNECT_TIMEOUT
    )
    result.wrong = sum(c.wrong for c in clients)
    return result


# -- channel fan-out ----------------------------------------------------------------------


def notification_bytes(data: str) -> bytes:
    """The ``rpc.message`` notification every server sends for ``data`` on ``CHANNEL``."""
    params = {"channel": CHANNEL, "data": data}
    return msgspec.json.encode({"jsonrpc": "2.0", "method": "rpc.message", "params": params})


#: Where a notification's data starts and ends, counted from its end.
_DATA_END = len(notification_bytes("")) - notification_bytes("").index(b'""') - 1
_DATA_START = _DATA_END + MESSAGE_BYTES


class Channel(Room):
    """The fan-out benchmark's room, fed by ``publish`` requests instead of raw messages."""

    __slots__ = ("frame_size",)

    def __init__(self, n: int, window: int) -> None:
        super().__init__(n, window)
        self.frame_size = len(notification_bytes("x" * MESSAGE_BYTES))

    def pump(self) -> None:
        """Publish while fewer than ``window`` messages are incompletely delivered."""
        sender = self.sender
        if sender is None or not self.sending:
            return
        limit = self.completed + self.window
        seq = self.sent
        clock = time.perf_counter_ns
        while seq < limit:
            request = b'{"jsonrpc":"2.0","method":"publish","params":["%011d:%020d"],"id":%d}'
            sender.send(_TEXT, request % (seq, clock(), seq))
            seq += 1
        self.sent = seq


class Subscriber(Receiver):
    """One subscriber: subscribes, then counts, checks order, samples latency."""

    room: Channel

    def __init__(self, room: Channel, index: int, pattern: str) -> None:
        super().__init__(room, index)
        self.pattern = pattern

    def subscribe(self) -> None:
        assert self.transport is not None
        request = {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": [self.pattern], "id": 0}
        self.transport.send(_TEXT, msgspec.json.encode(request))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        room = self.room
        if frame.payload_size != room.frame_size:
            kind = frame.msg_type
            if kind == _CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            elif (
                kind == _TEXT and not self.is_ready and b'"result"' in frame.get_payload_as_bytes()
            ):
                self.is_ready = True  # the answer to rpc.subscribe
                room.ready += 1
                if room.ready == room.connected:
                    room.ready_event.set()
            return
        if frame.last_in_buffer:
            room.reads += 1
        payload = frame.get_payload_as_bytes()[-_DATA_START:-_DATA_END]
        seq = int(payload[:11])
        expected = self.expected
        if seq == expected:
            self.expected = seq + 1
        elif seq > expected:
            self.gaps += seq - expected
            self.expected = seq + 1
        else:
            self.out_of_order += 1
            return
        self.received += 1
        room.delivered += 1
        if room.measuring and not (seq + self.index) & SAMPLE_MASK:
            room.samples.append(time.perf_counter_ns() - int(payload[12:]))
        ring = room.ring
        slot = seq & _RING_MASK
        count = ring[slot] + 1
        ring[slot] = count
        if count == room.n and seq == room.completed:
            room.advance()


def patterns(receivers: int) -> list[str]:
    """What each subscriber subscribes to: every other one the pattern, the rest the name."""
    return [PATTERN if i % 2 else CHANNEL for i in range(receivers)]


async def measure_channel(
    port: int, receivers: int, settings: Settings, server: ServerProcess
) -> RunResult:
    """Connect, subscribe, publish for ``warmup + duration`` seconds, drain, disconnect."""
    result = RunResult(server="", receivers=receivers, repeat=0)
    room = Channel(receivers, settings.window)
    members = [Subscriber(room, i, p) for i, p in enumerate(patterns(receivers))]
    publisher = Sender()
    url = f"ws://127.0.0.1:{port}/rpc"
    sender: WSTransport | None = None
    try:
        await asyncio.wait_for(_connect_all(url, members), CONNECT_TIMEOUT)
        for member in members:
            member.subscribe()
        await asyncio.wait_for(room.ready_event.wait(), SUBSCRIBE_TIMEOUT)
        transport, _ = await asyncio.wait_for(ws_connect(_factory(publisher), url), CONNECT_TIMEOUT)
        room.sender = sender = transport

        await _send_and_measure(room, members, publisher, room.frame_size, settings, server, result)
        return result
    finally:
        room.sending = False
        room.stopping = True
        await _disconnect([m.transport for m in members] + [sender])
