"""Cluster fan-out: rooms across two granian workers through each broker, against one worker.

For each setup (gobstopper under granian RSGI: one worker with the in-memory broker,
the baseline; one worker with the Redis broker; two workers with the Redis broker, the
Redis Cluster broker and the NATS broker), this starts the broker on free ports (a
redis-server; three redis-servers as one cluster; a nats-server with JetStream), pinned
with the server to core 1 when it can, then the fan-out benchmark's load: one sender, a
room of N receivers, the receivers spread over the workers by the kernel. With two
workers, the members on the sender's worker get each message directly and the others
through the broker. A broker whose program is not installed is left out, and said so.

    python -m benchmarks.cluster            # full run, writes docs/benchmarks.md
    python -m benchmarks.cluster --quick    # shorter, one repeat

Results go between the ``<!-- cluster:begin -->`` and ``<!-- cluster:end -->`` markers.
The channel workload across nodes is ``benchmarks.routing``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from .brokers import BROKERS, BrokerProcess, Watched, broker_versions, missing_programs
from .cli import in_turns
from .loadgen import RunResult, Settings, measure
from .report import (
    _median,
    _plural,
    _version,
    cpu_model,
    fmt_num,
    fmt_pct,
    log_problems,
    measured,
    replace_section,
    saturation,
    save_json,
    source_revision,
    summarise,
    table,
)
from .servers import (
    ROOT,
    ServerProcess,
    ServerSpec,
    measure_on,
    pinning_available,
    server_specs,
)

__all__ = ["SETUPS", "main"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- cluster:begin -->"
END = "<!-- cluster:end -->"
BASELINE = "1 worker, memory"


#: Setup -> (its broker, None for memory; its workers). The first is the baseline.
SETUPS: dict[str, tuple[str | None, int]] = {
    BASELINE: (None, 1),
    "1 worker, Redis": ("Redis", 1),
    "2 workers, Redis": ("Redis", 2),
    "2 workers, Redis Cluster": ("Redis Cluster", 2),
    "2 workers, NATS": ("NATS", 2),
}


def setup_spec(name: str, broker_url: str | None) -> ServerSpec:
    gob = server_specs("fanout")["gob-rsgi"]
    workers = SETUPS[name][1]
    return ServerSpec(name, gob.argv, {"GOBSTOPPER_BROKER_URL": broker_url or "memory://"}, workers)


@dataclass
class ClusterRun(RunResult):
    """A run, with the share of a core its broker used while measuring (in none of the
    server's)."""

    broker_cpu: float | None = None


def run_setup(name: str, receivers: int, repeat: int, settings: Settings) -> ClusterRun:
    """One run on a fresh server and a fresh broker."""
    broker_name = SETUPS[name][0]
    broker: BrokerProcess | None = None
    watched: list[Watched] = []

    def measure_one(server: ServerProcess) -> Coroutine[Any, Any, RunResult]:
        watched.append(Watched([server], broker))
        target = cast(ServerProcess, watched[-1])  # it has what the run reads
        return measure(server.port, receivers, settings, target)

    try:
        if broker_name is not None:
            broker = BROKERS[broker_name][0](settings.pin)
        result, problems = measure_on(
            setup_spec(name, broker.url if broker else None),
            settings.pin,
            measure_one,
            lambda error: RunResult(name, receivers, repeat, error=error),
        )
    except Exception as exc:  # the broker did not start
        result, problems = RunResult(name, receivers, repeat, error=f"{exc}"), []
    finally:
        if broker is not None:
            broker.stop()
    run = ClusterRun(**asdict(result))
    run.server, run.repeat, run.log_problems = name, repeat, problems
    if watched and run.error is None and run.server_cpu is not None:
        run.broker_cpu = watched[0].broker_share()
        run.server_cpu -= run.broker_cpu or 0.0
    return run


def cluster_report(
    results: Sequence[ClusterRun], names: Sequence[str], args: argparse.Namespace, command: str
) -> str:
    summaries = summarise(results, names)
    lines = [
        BEGIN,
        measured(command),
        "",
        table(summaries).replace("ratio to raw RSGI", "ratio to 1 worker, memory"),
        "",
    ]
    for s in summaries:
        ok = [r for r in results if r.server == s.server and r.receivers == s.receivers]
        ok = [r for r in ok if r.error is None]
        broker = SETUPS[s.server][0]
        broker_cpu = _median([r.broker_cpu for r in ok])
        saturated = saturation(s.server_cpu, broker_cpu, s.bench_cpu, args.pin, broker or "")
        head = f"- {s.server}, {s.room} receivers: "
        base = next((b for b in summaries if b.server == BASELINE and b.room == s.room), None)
        if s.server == BASELINE or base is None or s.p99_ms is None or base.p99_ms is None:
            lines.append(head + f"saturated: {saturated}")
            continue
        lines.append(
            head + f"{fmt_num(s.ratio, '.2f')} of the single worker's deliveries/s; p50 "
            f"{(s.p50_ms or 0) - (base.p50_ms or 0):+.1f} ms, p99 {s.p99_ms - base.p99_ms:+.1f} ms "
            f"against it; {broker} CPU {fmt_pct(broker_cpu)}; saturated: {saturated}"
        )
    problems = log_problems(results)
    pin = "servers and brokers on core 1, load generator on core 0" if args.pin else "not pinned"
    brokers = [b for b in (SETUPS[n][0] for n in names) if b is not None]
    lines += [
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}); {pin}. Two workers share the "
        "server's core with the broker: the figures show what crossing the broker costs, "
        "not what a second core would add.",
        f"- Versions: granian {_version('granian')}, {broker_versions(brokers)}; "
        f"gobstopper at {source_revision()}.",
        f"- Settings: the fan-out benchmark's (32-byte messages, {args.window} in flight, "
        f"{args.warmup:g} s warm-up, {args.duration:g} s measured), "
        f"{_plural(args.repeat, 'run')} per row, a fresh server and a fresh broker for each "
        "run; the Redis Cluster has three masters, the nats-server runs JetStream (where "
        "the NATS broker keeps presence).",
        "- CPU: the share of one core used while measuring; server CPU leaves the broker's "
        "out. *Saturated* names the side at 90 % of its core or more (with pinning, the "
        "server's core holds the server and the broker), the limit of the rate; neither "
        "means the window's round trip through the sockets was.",
    ]
    if args.left_out:
        lines.append(
            "- Left out: "
            + "; ".join(f"{b} ({p} is not installed)" for b, p in args.left_out.items())
            + "."
        )
    if problems:
        lines.append("- Server log lines worth a look:")
        lines += [f"  - `{line[:200]}`" for line in problems[:10]]
    else:
        lines.append("- Server logs: no warnings or errors.")
    lines.append(END)
    return "\n".join(lines)


_INTRO = """## Cluster fan-out: rooms across workers through a broker

`python -m benchmarks.cluster` runs the fan-out load against gobstopper under granian
RSGI with one worker and the in-memory broker (the baseline), one worker with the Redis
broker, and two workers with the Redis, Redis Cluster and NATS brokers (the receivers
spread over both).
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, one run per row")
    p.add_argument("--rooms", default="100,1000", help="room sizes, comma-separated")
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 1)")
    p.add_argument("--repeat", type=int, help="runs per configuration (default 3)")
    p.add_argument("--window", type=int, default=128, help="messages in flight (default 128)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    try:
        args.room_sizes = [int(r) for r in args.rooms.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rooms={args.rooms!r} is not a comma-separated list of integers")
    if not args.room_sizes or min(args.room_sizes) < 1 or args.repeat < 1:
        p.error("--rooms and --repeat need positive numbers")
    if shutil.which("redis-server") is None:
        p.error("redis-server is not installed (apt-get install redis-server)")
    brokers = [b for b, _ in SETUPS.values() if b is not None]
    args.left_out = missing_programs(brokers)
    args.setups = [n for n, (b, _) in SETUPS.items() if b not in args.left_out]
    args.pin = not args.no_pin and pinning_available()
    args.settings = Settings(args.window, args.warmup, args.duration, 4, args.pin)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.cluster", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    for broker, program in args.left_out.items():
        print(f"{program} is not installed: no {broker} setup", flush=True)
    names = args.setups
    started = time.monotonic()
    results = in_turns(
        args.repeat,
        [(receivers, name) for receivers in args.room_sizes for name in names],
        lambda case, repeat: run_setup(case[1], case[0], repeat, args.settings),
        _progress,
    )
    section = cluster_report(results, names, args, command)
    replace_section(args.out, BEGIN, END, section, _INTRO + "\n" + section)
    save_json(args.json, results)
    print(section)
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


def _progress(r: ClusterRun) -> str:
    head = f"[run {r.repeat}] {r.server:<24} {r.receivers:>5} receivers: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.deliveries_per_s / 1000:.1f} k deliveries/s, p99 {fmt_num(r.p99_ms, '.1f')} ms, "
        f"gaps {r.gaps}, out of order {r.out_of_order}, server CPU {fmt_pct(r.server_cpu)}, "
        f"broker CPU {fmt_pct(r.broker_cpu)}, load generator CPU {fmt_pct(r.bench_cpu)}, "
        f"others {fmt_pct(r.other_cpu)}"
    )


if __name__ == "__main__":
    sys.exit(main())
