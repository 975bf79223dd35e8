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

On a channel with history (``positioned``), each notification also carries ``offset``
and ``epoch`` at the start of its params: its size grows with the offset, but the data
stays at the same distance from its end. A subscriber then also reads the offset, and
counts the notifications whose offset does not follow the sequence number as every
subscriber's first one did (``wrong_offsets``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
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
    "POSITION_MAX",
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
#: Subscriptions sent before waiting for their answers: a burst of them all at once
#: would measure how the server takes a burst (with history on Redis, each one reads
#: the store), not the fan-out.
SUBSCRIBE_BATCH = 50

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


def notification_bytes(data: str, channel: str = CHANNEL) -> bytes:
    """The ``rpc.message`` notification every server sends for ``data`` on ``channel``."""
    params = {"channel": channel, "data": data}
    return msgspec.json.encode({"jsonrpc": "2.0", "method": "rpc.message", "params": params})


#: Where a notification's data starts and ends, counted from its end.
_DATA_END = len(notification_bytes("")) - notification_bytes("").index(b'""') - 1
_DATA_START = _DATA_END + MESSAGE_BYTES
#: Where a positioned notification's offset starts (it ends at the next comma).
_OFFSET_AT = len(b'{"jsonrpc":"2.0","method":"rpc.message","params":{"offset":')
#: Bytes a position adds to a notification, at most (the server's limit too).
POSITION_MAX = 80
#: ... and typically: a 4-digit offset and a 16-character epoch.
POSITION_TYPICAL = len(b'"offset":1000,"epoch":"0123456789abcdef",')


class Channel(Room):
    """The fan-out benchmark's room, fed by ``publish`` requests instead of raw messages.

    ``positioned``: the notifications carry a history position (their size varies);
    ``channel``: the channel they come from.
    """

    __slots__ = ("frame_size", "largest_frame", "offset_base", "refused")

    def __init__(
        self, n: int, window: int, positioned: bool = False, channel: str = CHANNEL
    ) -> None:
        super().__init__(n, window)
        self.frame_size = len(notification_bytes("x" * MESSAGE_BYTES, channel))
        self.largest_frame = self.frame_size + (POSITION_MAX if positioned else 0)
        self.offset_base: int | None = None  # offset minus sequence number, once known
        self.refused: list[bytes] = []  # the error answers to rpc.subscribe

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
            self.other_frame(transport, frame)
            return
        if frame.last_in_buffer:
            room.reads += 1
        self.count(frame.get_payload_as_bytes())

    def other_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """A frame that is not a notification: a close, or the answer to rpc.subscribe."""
        kind = frame.msg_type
        if kind == _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == _TEXT and not self.is_ready:
            answer = frame.get_payload_as_bytes()
            if b'"result"' not in answer:
                self.room.refused.append(answer)
                return
            self.is_ready = True
            room = self.room
            room.ready += 1
            if room.ready == room.connected:
                room.ready_event.set()

    def count(self, notification: bytes) -> int:
        """Check a notification's sequence number, count it, sample its latency, and
        return the sequence number."""
        room = self.room
        payload = notification[-_DATA_START:-_DATA_END]
        seq = int(payload[:11])
        expected = self.expected
        if seq == expected:
            self.expected = seq + 1
        elif seq > expected:
            self.gaps += seq - expected
            self.expected = seq + 1
        else:
            self.out_of_order += 1
            return seq
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
        return seq


class PositionedSubscriber(Subscriber):
    """A subscriber of a channel with history: notifications of varying size, each with
    an offset, which must follow its sequence number as everyone's first one did."""

    def __init__(self, room: Channel, index: int, pattern: str) -> None:
        super().__init__(room, index, pattern)
        self.wrong_offsets = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        room = self.room
        if not room.frame_size < frame.payload_size <= room.largest_frame:
            self.other_frame(transport, frame)
            return
        if frame.last_in_buffer:
            room.reads += 1
        notification = frame.get_payload_as_bytes()
        seq = self.count(notification)
        try:
            offset = int(notification[_OFFSET_AT : notification.index(b",", _OFFSET_AT)])
        except ValueError:
            self.wrong_offsets += 1  # no offset where a position starts
            return
        base = room.offset_base
        if base is None:
            room.offset_base = offset - seq
        elif offset - seq != base:
            self.wrong_offsets += 1


async def _subscribe_all(room: Channel, members: Sequence[Subscriber]) -> None:
    """Subscribe every member, ``SUBSCRIBE_BATCH`` at a time, each batch once the one
    before is answered.

    Raises:
        RuntimeError: a subscription was refused, or not answered in time.
    """
    for start in range(0, len(members), SUBSCRIBE_BATCH):
        batch = members[start : start + SUBSCRIBE_BATCH]
        for member in batch:
            member.subscribe()
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        while room.ready < start + len(batch):
            if room.refused:
                answer = room.refused[0].decode(errors="replace")[:200]
                raise RuntimeError(f"{len(room.refused)} subscriptions refused: {answer}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {room.ready}/{len(members)} subscriptions answered")
            await asyncio.sleep(0.005)


def patterns(receivers: int) -> list[str]:
    """What each subscriber subscribes to: every other one the pattern, the rest the name."""
    return [PATTERN if i % 2 else CHANNEL for i in range(receivers)]


async def measure_channel(
    port: int,
    receivers: int,
    settings: Settings,
    server: ServerProcess,
    positioned: bool = False,
) -> RunResult:
    """Connect, subscribe, publish for ``warmup + duration`` seconds, drain, disconnect.

    ``positioned``: the channel keeps history, and every notification carries a position.
    """
    result = RunResult(server="", receivers=receivers, repeat=0)
    room = Channel(receivers, settings.window, positioned)
    kind = PositionedSubscriber if positioned else Subscriber
    members = [kind(room, i, p) for i, p in enumerate(patterns(receivers))]
    publisher = Sender()
    url = f"ws://127.0.0.1:{port}/rpc"
    sender: WSTransport | None = None
    try:
        await asyncio.wait_for(_connect_all(url, members), CONNECT_TIMEOUT)
        await _subscribe_all(room, members)
        transport, _ = await asyncio.wait_for(ws_connect(_factory(publisher), url), CONNECT_TIMEOUT)
        room.sender = sender = transport

        frame_size = room.frame_size + (POSITION_TYPICAL if positioned else 0)
        await _send_and_measure(room, members, publisher, frame_size, settings, server, result)
        result.wrong_offsets = sum(getattr(m, "wrong_offsets", 0) for m in members)
        return result
    finally:
        room.sending = False
        room.stopping = True
        await _disconnect([m.transport for m in members] + [sender])
