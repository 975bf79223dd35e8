"""The load generator: one sender and a room of receivers, on picows.

The sender keeps a bounded window of messages in flight: it sends message ``k`` only once
every receiver has got message ``k - window``. Each 32-byte text message carries its
sequence number and its send time, so receivers check their order and, for a sample of
messages, the delivery latency (receive time minus send time, both in this process).
To keep the load generator cheap, a receiver's socket wakes it only once a few messages
are waiting (``SO_RCVLOWAT``).

Some receivers may be *stalled*: they take their part in the start-up marker, then stop
reading for the rest of the run, with a receive buffer shrunk to the minimum so that
their socket fills in a fraction of a second, like a client on a dead mobile link. The
sender's window then counts only the healthy receivers: the run shows whether the
stalled ones hold up everybody else, and how much memory the server spends on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .servers import ServerProcess, machine_busy_seconds

__all__ = [
    "MESSAGE_BYTES",
    "RING",
    "SAMPLE_MASK",
    "Clocks",
    "RunResult",
    "Settings",
    "StalledReceiver",
    "measure",
    "record_cpu",
    "record_latency",
    "stalled_indices",
]

MESSAGE_BYTES = 32  # the smallest message: a sequence number and a send time
_SYNC_BYTE = ord("S")
RING = 4096  # completion counters, indexed by sequence number modulo RING
_RING_MASK = RING - 1
SAMPLE_MASK = 31  # a receiver samples latency when (seq + its index) % 32 == 0
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE

STALLED_RCVBUF = 1024  # bytes; Linux makes it its minimum, about 2 KiB
CONNECT_TIMEOUT = 60.0
SYNC_TIMEOUT = 15.0
DRAIN_TIMEOUT = 5.0  # at least; more for a slow server with a full window
DRAIN_TIMEOUT_MAX = 20.0


# -- load generator -----------------------------------------------------------------------


class Room:
    """What the receivers and the sender of one run share."""

    __slots__ = (
        "completed",
        "connected",
        "delivered",
        "drained",
        "measuring",
        "messages",
        "n",
        "reads",
        "ready",
        "ready_event",
        "ring",
        "samples",
        "sender",
        "sending",
        "sent",
        "sent_at",
        "size",
        "stopping",
        "window",
    )

    def __init__(
        self, n: int, window: int, connected: int | None = None, size: int = MESSAGE_BYTES
    ) -> None:
        self.n = n  # the receivers that read: a message is complete once they all have it
        self.connected = n if connected is None else connected  # all, stalled included
        self.window = window
        self.size = size  # bytes per message, at least MESSAGE_BYTES
        self.ring = [0] * RING
        # Each message in flight, as sent, and its send time, by sequence number modulo
        # RING: a receiver compares what it gets with the message it expects, and takes
        # the send time from here, without parsing either.
        self.messages: list[bytes | None] = [None] * RING
        self.sent_at = [0] * RING
        self.sent = 0  # messages sent (the next sequence number)
        self.completed = 0  # messages every receiver has got, from 0 on
        self.delivered = 0  # messages received, summed over receivers
        self.reads = 0  # socket reads that brought messages (their last frame counts them)
        self.ready = 0
        self.ready_event = asyncio.Event()
        self.drained = asyncio.Event()
        self.sending = False
        self.measuring = False
        self.stopping = False
        self.samples: list[int] = []
        self.sender: WSTransport | None = None

    def pump(self) -> None:
        """Send while fewer than ``window`` messages are incompletely delivered."""
        sender = self.sender
        if sender is None or not self.sending:
            return
        limit = self.completed + self.window
        seq = self.sent
        clock = time.perf_counter_ns
        padding = b"." * (self.size - MESSAGE_BYTES)
        messages, sent_at = self.messages, self.sent_at
        while seq < limit:
            now = clock()
            message = b"%011d:%020d%b" % (seq, now, padding)
            messages[seq & _RING_MASK], sent_at[seq & _RING_MASK] = message, now
            sender.send(_TEXT, message)
            seq += 1
        self.sent = seq

    def advance(self) -> None:
        """Message ``completed`` has reached everyone: move on, send more."""
        ring, n, done, sent = self.ring, self.n, self.completed, self.sent
        messages = self.messages
        while done < sent and ring[done & _RING_MASK] == n:
            ring[done & _RING_MASK] = 0
            messages[done & _RING_MASK] = None  # a late copy of it is out of order
            done += 1
        self.completed = done
        if self.sending:
            self.pump()
        elif done == sent:
            self.drained.set()


class Receiver(WSListener):
    """One room member: counts, checks order, samples latency."""

    stalled = False

    def __init__(self, room: Room, index: int) -> None:
        super().__init__()
        self.room = room
        self.index = index
        self.transport: WSTransport | None = None
        self.is_ready = False
        self.expected = 0
        self.received = 0
        self.gaps = 0
        self.out_of_order = 0
        self.closed = False  # by the server or the network, before the end of the run

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # The fast path, for the message expected next: its bytes equal those the sender
        # sent (one compare checks order and content); everything else goes to
        # ``other_frame``.
        room = self.room
        payload = frame.get_payload_as_bytes()
        seq = self.expected
        slot = seq & _RING_MASK
        if payload != room.messages[slot]:
            self.other_frame(transport, frame, payload)
            return
        if frame.last_in_buffer:
            room.reads += 1
        self.expected = seq + 1
        self.received += 1
        room.delivered += 1
        if not (seq + self.index) & SAMPLE_MASK and room.measuring:
            room.samples.append(time.perf_counter_ns() - room.sent_at[slot])
        ring = room.ring
        count = ring[slot] + 1
        ring[slot] = count
        if count == room.n and seq == room.completed:
            room.advance()

    def other_frame(self, transport: WSTransport, frame: WSFrame, payload: bytes) -> None:
        """A close frame, a start-up marker, or a message out of its turn."""
        room = self.room
        if len(payload) != room.size:
            if frame.msg_type == _CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        if frame.last_in_buffer:
            room.reads += 1
        if payload[0] == _SYNC_BYTE:
            if not self.is_ready:
                self.is_ready = True
                room.ready += 1
                if room.ready == room.connected:
                    room.ready_event.set()
                if self.stalled:
                    transport.underlying_transport.pause_reading()
            return
        seq = int(payload[:11])
        expected = self.expected
        if seq > expected:
            self.gaps += seq - expected
        elif seq < expected:
            self.out_of_order += 1
            return
        # Not the bytes sent, yet in its turn: count it as the other checks always did.
        self.expected = seq + 1
        self.received += 1
        room.delivered += 1
        if room.measuring and not (seq + self.index) & SAMPLE_MASK:
            room.samples.append(time.perf_counter_ns() - int(payload[12:MESSAGE_BYTES]))
        ring = room.ring
        slot = seq & _RING_MASK
        count = ring[slot] + 1
        ring[slot] = count
        if count == room.n and seq == room.completed:
            room.advance()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.room.stopping:
            self.closed = True


class StalledReceiver(Receiver):
    """A member that stops reading once it has its start-up marker."""

    stalled = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if not self.is_ready:
            self.other_frame(transport, frame, frame.get_payload_as_bytes())
        # Else: what was read with the marker; a stalled receiver ignores it.


class Sender(WSListener):
    """The sender's connection: it only sends; what it receives is ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True


# -- one run ------------------------------------------------------------------------------


@dataclass
class RunResult:
    server: str
    receivers: int
    repeat: int
    stalled: int = 0  # receivers of the room that stop reading
    size: int = MESSAGE_BYTES  # bytes per message
    deliveries_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    gaps: int = 0
    out_of_order: int = 0
    wrong_offsets: int = 0  # channels with history: pushes whose offset was not expected
    closed: int = 0
    sent: int = 0
    bench_cpu: float = 0.0  # share of one core used by this process while measuring
    messages_per_read: float = 0.0  # ~1: the load generator reads each message at once
    server_cpu: float | None = None  # the same for the server's processes
    server_rss_growth: int | None = None  # bytes, from the first message to the last
    other_cpu: float | None = None  # cores used by everything else on the machine
    attempts: int = 1
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6


@dataclass(frozen=True)
class Clocks:
    """What a measurement reads at its start and at its end."""

    cpu: float  # this process's CPU time
    wall: float
    server_cpu: float  # the server's processes' CPU time
    busy: float | None  # the whole machine's, when /proc/stat tells

    @classmethod
    def read(cls, server: ServerProcess) -> Clocks:
        return cls(
            time.process_time(), time.perf_counter(), server.cpu_seconds(), machine_busy_seconds()
        )


def record_cpu(result: Any, start: Clocks, end: Clocks) -> float:
    """Set ``result``'s ``bench_cpu``, ``server_cpu`` and ``other_cpu``: the shares of one
    core this process, the server and everything else used between ``start`` and ``end``.
    Returns the seconds between them."""
    elapsed = end.wall - start.wall
    result.bench_cpu = (end.cpu - start.cpu) / elapsed
    result.server_cpu = (end.server_cpu - start.server_cpu) / elapsed
    if start.busy is not None and end.busy is not None:
        others = (end.busy - start.busy) / elapsed - result.server_cpu - result.bench_cpu
        result.other_cpu = max(0.0, others)
    return elapsed


def record_latency(result: Any, samples: Sequence[int]) -> None:
    """Set ``result``'s ``latency_samples``, ``p50_ms`` and ``p99_ms`` from ``samples`` (ns)."""
    ordered = sorted(samples)
    result.latency_samples = len(ordered)
    if ordered:
        result.p50_ms = _percentile(ordered, 0.50)
        result.p99_ms = _percentile(ordered, 0.99)


def _factory(listener: WSListener) -> Callable[[], WSListener]:
    return lambda: listener


async def _small_buffer_socket(parsed: object) -> socket.socket:
    """A socket connected with the smallest receive buffer: set before the connection,
    so the window it advertises stays small (a stalled client's socket fills fast)."""
    host, port = getattr(parsed, "host"), getattr(parsed, "port")  # noqa: B009
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_all(url: str, listeners: Sequence[WSListener]) -> None:
    batch = 50  # below the listen backlog, and gentle on the server's accept loop
    for start in range(0, len(listeners), batch):
        chunk = listeners[start : start + batch]
        await asyncio.gather(
            *(
                ws_connect(
                    _factory(listener),
                    url,
                    socket_factory=_small_buffer_socket
                    if getattr(listener, "stalled", False)
                    else None,
                )
                for listener in chunk
            )
        )


@dataclass(frozen=True)
class Settings:
    """How each run is made."""

    window: int = 128  # messages in flight: enough to keep every server busy
    warmup: float = 1.0  # seconds before measuring
    duration: float = 5.0  # seconds measured
    batch: int = 4  # messages a receiver's socket holds before the kernel wakes it
    pin: bool = False  # server on core 1, load generator on core 0
    size: int = MESSAGE_BYTES  # bytes per message


def stalled_indices(receivers: int, stalled: int) -> set[int]:
    """Which receivers stall: ``stalled`` of them, spread evenly over the room."""
    if stalled <= 0:
        return set()
    step = receivers / stalled
    return {int(i * step) for i in range(stalled)}


async def measure(
    port: int, receivers: int, settings: Settings, server: ServerProcess, stalled: int = 0
) -> RunResult:
    """Connect, synchronise, send for ``warmup + duration`` seconds, drain, disconnect.

    ``stalled`` receivers stop reading once they are in the room; the figures count
    only the others.
    """
    result = RunResult(
        server="", receivers=receivers, repeat=0, stalled=stalled, size=settings.size
    )
    stall = stalled_indices(receivers, stalled)
    size = settings.size
    room = Room(receivers - len(stall), settings.window, connected=receivers, size=size)
    sync_message = b"S" * size
    members = [(StalledReceiver if i in stall else Receiver)(room, i) for i in range(receivers)]
    healthy = [m for m in members if not m.stalled]
    sender_listener = Sender()
    base = f"ws://127.0.0.1:{port}"
    sender: WSTransport | None = None
    try:
        await asyncio.wait_for(_connect_all(f"{base}/ws/recv", members), CONNECT_TIMEOUT)
        transport, _ = await asyncio.wait_for(
            ws_connect(_factory(sender_listener), f"{base}/ws/send"), CONNECT_TIMEOUT
        )
        room.sender = sender = transport

        # A receiver's upgrade completes before the server has put it in the room: send
        # marker messages until every receiver has got one, so all are in.
        deadline = time.monotonic() + SYNC_TIMEOUT
        while not room.ready_event.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {room.ready}/{receivers} receivers joined the room")
            transport.send(_TEXT, sync_message)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(room.ready_event.wait(), 0.05)

        await _send_and_measure(room, healthy, sender_listener, size, settings, server, result)
        return result
    finally:
        room.sending = False
        room.stopping = True
        await _disconnect([m.transport for m in members] + [sender])


async def _send_and_measure(
    room: Room,
    healthy: Sequence[Receiver],
    sender: Sender,
    frame_size: int,
    settings: Settings,
    server: ServerProcess,
    result: RunResult,
) -> None:
    """With every receiver in the room and the sender connected: send for ``warmup +
    duration`` seconds, drain, and fill in ``result`` (``healthy``: the receivers that
    read, ``frame_size``: the bytes of a message's payload as the receivers get it)."""
    # A frame as a server sends it: a header, no mask.
    frame_bytes = frame_size + (2 if frame_size < 126 else 4)
    if settings.batch > 1:
        _set_low_water(healthy, min(settings.batch, room.window) * frame_bytes)
    rss0 = server.rss_bytes()
    room.sending = True
    room.pump()
    await asyncio.sleep(settings.warmup)

    delivered0, reads0, start = room.delivered, room.reads, Clocks.read(server)
    room.measuring = True
    await asyncio.sleep(settings.duration)
    room.measuring = False
    delivered1, reads1, end = room.delivered, room.reads, Clocks.read(server)
    result.server_rss_growth = server.rss_bytes() - rss0

    room.sending = False
    if settings.batch > 1:
        _set_low_water(healthy, 1)  # the last messages must not wait for company
    if room.completed == room.sent:
        room.drained.set()
    # What has not arrived by then is counted as gaps below.
    with contextlib.suppress(asyncio.TimeoutError):
        # Time enough for the messages in flight at the measured rate, three times
        # over: what is still missing after that is counted as a gap.
        rate = max(1.0, (delivered1 - delivered0) / (end.wall - start.wall))
        in_flight = room.window * room.n
        drain = min(DRAIN_TIMEOUT_MAX, max(DRAIN_TIMEOUT, 3 * in_flight / rate))
        await asyncio.wait_for(room.drained.wait(), drain)

    elapsed = record_cpu(result, start, end)
    result.deliveries_per_s = (delivered1 - delivered0) / elapsed
    result.messages_per_read = (delivered1 - delivered0) / max(1, reads1 - reads0)
    record_latency(result, room.samples)
    result.sent = room.sent
    result.gaps = sum(m.gaps + max(0, room.sent - m.expected) for m in healthy)
    result.out_of_order = sum(m.out_of_order for m in healthy)
    result.closed = sum(m.closed for m in healthy) + int(sender.closed)


def _set_low_water(members: Sequence[Receiver], nbytes: int) -> None:
    """Have the kernel wake a receiver only once ``nbytes`` are waiting (SO_RCVLOWAT)."""
    for member in members:
        transport = member.transport
        if transport is None or transport.is_disconnected:
            continue
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)


async def _disconnect(transports: Sequence[WSTransport | None]) -> None:
    open_ones = [t for t in transports if t is not None and not t.is_disconnected]
    for t in open_ones:
        t.send_close(WSCloseCode.OK)
        t.disconnect()
    if open_ones:
        await asyncio.wait(
            [asyncio.ensure_future(t.wait_disconnected()) for t in open_ones], timeout=5.0
        )
