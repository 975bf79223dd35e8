"""What one broker connection and one broker server carry: the figures a capacity plan
starts from.

For each broker (Redis, a three-master Redis Cluster, NATS), two nodes in this process
share it: one publishes 200-byte messages to one room as fast as its broker takes them
(each ``publish`` awaited, as the manager does, and at most ``BACKLOG`` not yet
received), the other receives them. Measured:
messages per second end to end, the CPU the two nodes used per message (so: messages
per second one node's broker connection can carry per core), and the CPU the broker
server used per message (so: messages per second one broker core can carry). The same
for publications with history (``publish_with_history``: appended, then delivered).

The broker runs on core 1, this process on core 0, when pinning is possible.

    python -m benchmarks.broker_rate            # writes docs/benchmarks.md
    python -m benchmarks.broker_rate --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gobstopper import envelope
from gobstopper.brokers import Broker, broker_from_url
from gobstopper.envelope import Envelope

from .brokers import BROKERS, broker_versions, missing_programs
from .report import cpu_model, measured, replace_section

BEGIN = "<!-- broker-rate:begin -->"
END = "<!-- broker-rate:end -->"
PAYLOAD = b"x" * 200
IN_FLIGHT = 256  # publishes awaited together (one connection keeps their order)
BACKLOG = 8192  # messages published and not yet received, at most


@dataclass
class Rate:
    broker: str
    kind: str  # "plain" or "history"
    messages: int
    seconds: float
    nodes_cpu: float  # CPU seconds of this process
    broker_cpu: float  # CPU seconds of the broker's processes

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def per_node_core(self) -> float:
        return self.messages / self.nodes_cpu if self.nodes_cpu else float("nan")

    @property
    def per_broker_core(self) -> float:
        return self.messages / self.broker_cpu if self.broker_cpu else float("nan")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(url: str, kind: str, duration: float) -> tuple[int, float, float]:
    """Publish for ``duration`` seconds; (messages received, seconds, CPU of this process)."""
    got = 0
    done = asyncio.Event()
    target = [0]

    caught_up = asyncio.Event()

    def receive(channel: str, data: bytes) -> None:
        nonlocal got
        got += 1
        if got % 1024 == 0:
            caught_up.set()
        if target[0] and got >= target[0]:
            done.set()

    publisher: Broker = broker_from_url(url, prefix="bench:")
    receiver: Broker = broker_from_url(url, prefix="bench:")
    await publisher.start(lambda channel, data: None)
    await receiver.start(receive)
    channel = "room:ticks" if kind == "plain" else "chan:ticks"
    await receiver.subscribe(channel)
    note = envelope.encode(Envelope(publisher.node_id, PAYLOAD, room="ticks"))
    head = envelope.encode_open(Envelope(publisher.node_id, PAYLOAD, topic="t", channel="ticks"))

    async def one() -> None:
        if kind == "plain":
            await publisher.publish(channel, note)
        else:
            await publisher.publish_with_history(channel, head, "t:ticks", PAYLOAD, 1000, 60)

    await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))  # warm: streams made
    await asyncio.sleep(0.2)
    got = 0
    sent = 0
    cpu, start = _cpu(), time.perf_counter()
    while time.perf_counter() - start < duration:
        await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
        sent += IN_FLIGHT
        # A publish returns once queued for the broker: paced by the receiver, so that
        # the queues stay short (and within the broker's bound) and what is measured
        # is the rate messages get through.
        while sent - got > BACKLOG:
            caught_up.clear()
            await caught_up.wait()
    target[0] = sent
    if got < sent:
        # A broker that lost messages is reported as slower (received / time), not hung.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), 10)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    await publisher.stop()
    await receiver.stop()
    return got, seconds, cpu


def measure(name: str, kind: str, duration: float, pin: bool) -> Rate:
    start_broker = BROKERS[name][0]
    broker = start_broker(pin)
    try:
        before = broker.cpu_seconds()
        got, seconds, cpu = asyncio.run(_run(broker.url, kind, duration))
        broker_cpu = broker.cpu_seconds() - before
    finally:
        broker.stop()
    return Rate(name, kind, got, seconds, cpu, broker_cpu)


def _pin() -> bool:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(0, {0})
    return True


def table(rates: list[Rate]) -> str:
    redis = {r.kind: r.per_second for r in rates if r.broker == "Redis"}
    lines = [
        "| broker | publications | messages/s end to end (ratio to Redis) "
        "| per core of the two nodes | per core of the broker |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rates:
        ratio = r.per_second / redis[r.kind] if redis.get(r.kind) else float("nan")
        lines.append(
            f"| {r.broker} | {r.kind} | {r.per_second:,.0f} ({ratio:.2f}) "
            f"| {r.per_node_core:,.0f} | {r.per_broker_core:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per row instead of 4")
    parser.add_argument("--duration", type=float, help="seconds per row")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    args = parser.parse_args(argv)
    names = [n for n in BROKERS if n not in missing_programs(list(BROKERS))]
    pin = False if args.no_pin else _pin()
    duration = args.duration or (1.0 if args.quick else 4.0)
    rates = []
    for name in names:
        for kind in ("plain", "history"):
            rate = measure(name, kind, duration, pin)
            print(f"{name:14} {kind:8} {rate.per_second:10,.0f} msg/s", file=sys.stderr)
            rates.append(rate)
    if args.json is not None:
        runs = [dict(dataclasses.asdict(r), per_second=r.per_second) for r in rates]
        args.json.write_text(json.dumps({"runs": runs}, indent=1))
    command = "python -m benchmarks.broker_rate" + (" --quick" if args.quick else "")
    section = "\n\n".join(
        [
            measured(command),
            f"Machine: {cpu_model()}, {os.cpu_count()} cores; brokers: "
            f"{broker_versions(names)}; the broker on core 1, the two nodes (this "
            "process, one event loop) on core 0"
            + ("" if pin else " (pinning unavailable: shared cores)")
            + f"; {PAYLOAD.__len__()}-byte payloads, {IN_FLIGHT} publishes in flight.",
            table(rates),
            "Saturated: the nodes' core (one Python process doing the publishing and the "
            "receiving for both nodes) in every row; the broker's core was not (its "
            "messages per core are what it would carry if it were). Absolute figures "
            "depend on the machine: use them as orders of magnitude, the ratios as "
            "comparisons.",
        ]
    )
    fallback = f"\n## What one broker carries\n\n{BEGIN}\n{section}\n{END}\n"
    replace_section(args.out, BEGIN, END, section, fallback)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
