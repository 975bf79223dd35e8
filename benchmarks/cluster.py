"""Cluster fan-out: rooms across two granian workers through Redis, against one worker.

For each setup (gobstopper under granian RSGI: one worker with the in-memory broker,
the baseline; one worker with the Redis broker; two workers with the Redis broker), this
starts a redis-server on a free port (pinned with the server to core 1 when it can),
then the fan-out benchmark's load: one sender, a room of N receivers, the receivers
spread over the workers by the kernel. With two workers, the members on the sender's
worker get each message directly and the others through Redis.

    python -m benchmarks.cluster            # full run, writes docs/benchmarks.md
    python -m benchmarks.cluster --quick    # shorter, one repeat

Results go between the ``<!-- cluster:begin -->`` and ``<!-- cluster:end -->`` markers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .fanout import run_spec
from .loadgen import RunResult, Settings
from .report import (
    _plural,
    _version,
    cpu_model,
    fmt_num,
    log_problems,
    measured,
    replace_section,
    save_json,
    source_revision,
    summarise,
    table,
)
from .servers import ROOT, RedisProcess, ServerSpec, pinning_available, server_specs

__all__ = ["main"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- cluster:begin -->"
END = "<!-- cluster:end -->"
BASELINE = "1 worker, memory"


def setups(redis_url: str) -> dict[str, ServerSpec]:
    gob = server_specs("fanout")["gob-rsgi"]
    redis_env = {"GOBSTOPPER_BROKER_URL": redis_url}
    return {
        BASELINE: ServerSpec(BASELINE, gob.argv, {"GOBSTOPPER_BROKER_URL": "memory://"}),
        "1 worker, Redis": ServerSpec("1 worker, Redis", gob.argv, redis_env),
        "2 workers, Redis": ServerSpec("2 workers, Redis", gob.argv, redis_env, workers=2),
    }


def cluster_report(
    results: Sequence[RunResult], names: Sequence[str], args: argparse.Namespace, command: str
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
        base = next((b for b in summaries if b.server == BASELINE and b.room == s.room), None)
        if s.server == BASELINE or base is None or s.p99_ms is None or base.p99_ms is None:
            continue
        lines.append(
            f"- {s.server}, {s.room} receivers: {fmt_num(s.ratio, '.2f')} of the single "
            f"worker's deliveries/s; p50 {s.p50_ms - (base.p50_ms or 0):+.1f} ms, p99 "
            f"{s.p99_ms - base.p99_ms:+.1f} ms against it"
        )
    problems = log_problems(results)
    pin = "servers and Redis on core 1, load generator on core 0" if args.pin else "not pinned"
    lines += [
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}); {pin}. Two workers share the "
        "server's core with Redis: the figures show what crossing Redis costs, not what a "
        "second core would add.",
        f"- Versions: granian {_version('granian')}, redis-py {_version('redis')}, "
        f"redis-server {RedisProcess.version()}; gobstopper at {source_revision()}.",
        f"- Settings: the fan-out benchmark's (32-byte messages, {args.window} in flight, "
        f"{args.warmup:g} s warm-up, {args.duration:g} s measured), "
        f"{_plural(args.repeat, 'run')} per row, a fresh server and a fresh Redis for each run.",
    ]
    if problems:
        lines.append("- Server log lines worth a look:")
        lines += [f"  - `{line[:200]}`" for line in problems[:10]]
    else:
        lines.append("- Server logs: no warnings or errors.")
    lines.append(END)
    return "\n".join(lines)


_INTRO = """## Cluster fan-out: rooms across workers through Redis

`python -m benchmarks.cluster` runs the fan-out load against gobstopper under granian
RSGI with one worker and the in-memory broker (the baseline), one worker with the Redis
broker, and two workers with the Redis broker (the receivers spread over both).
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
    args.pin = not args.no_pin and pinning_available()
    args.settings = Settings(args.window, args.warmup, args.duration, 4, args.pin)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.cluster", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    results: list[RunResult] = []
    names: list[str] = []
    started = time.monotonic()
    for repeat in range(1, args.repeat + 1):
        for receivers in args.room_sizes:
            for name in (BASELINE, "1 worker, Redis", "2 workers, Redis"):
                redis = RedisProcess.start(args.pin)
                try:
                    spec = setups(redis.url)[name]
                    result = run_spec(spec, receivers, 0, repeat, args.settings)
                finally:
                    redis.stop()
                if name not in names:
                    names.append(name)
                results.append(result)
                print(
                    f"[run {repeat}] {name:<18} {receivers:>5} receivers: "
                    + (
                        f"FAILED {result.error}"
                        if result.error
                        else f"{result.deliveries_per_s / 1000:.1f} k deliveries/s, "
                        f"p99 {fmt_num(result.p99_ms, '.1f')} ms, gaps {result.gaps}, "
                        f"out of order {result.out_of_order}"
                    ),
                    flush=True,
                )
    section = cluster_report(results, names, args, command)
    replace_section(args.out, BEGIN, END, section, _INTRO + "\n" + section)
    save_json(args.json, results)
    print(section)
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
