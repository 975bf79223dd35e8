"""Echo benchmark: round trips per second and their latency, six servers side by side.

For each server (raw RSGI, gobstopper under granian RSGI, granian ASGI and uvicorn,
Starlette on uvicorn, the ``websockets`` library's server), this starts it (one process,
one worker, uvloop, pinned to core 1 when it can) and, from this process (pinned to core
0), opens 1 or 50 picows connections that each keep 16 text messages in flight on
``/ws/echo``; it counts the messages that come back per second and times each round trip.

    python -m benchmarks.echo            # full run, writes docs/benchmarks.md
    python -m benchmarks.echo --quick    # shorter, one repeat

Results go between the ``<!-- echo:begin -->`` and ``<!-- echo:end -->`` markers of the
output file (the section is appended when they are missing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .cli import positive_ints, server_keys
from .echo_loadgen import EchoResult, EchoSettings, measure_echo
from .echo_report import echo_report, echo_table, summarise_echo, write_echo_report
from .report import fmt_num, fmt_pct, save_json
from .servers import (
    ROOT,
    UVICORN_WS,
    ServerProcess,
    ServerSpec,
    measure_workloads,
    pinning_available,
    run_measurement,
    server_specs,
)

__all__ = ["SERVERS", "UVICORN_WS", "main"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"

#: key -> server; the first one is the baseline of the ratios.
SERVERS: dict[str, ServerSpec] = server_specs("echo")


def run_server(
    spec: ServerSpec, workloads: Sequence[tuple[int, int]], repeat: int, settings: EchoSettings
) -> list[EchoResult]:
    """Start one server, measure every workload on it (fresh connections each), stop it."""

    def failed(workload: tuple[int, int], error: str) -> EchoResult:
        connections, size = workload
        return EchoResult(spec.name, connections, size, repeat, error=error)

    def measure(server: ServerProcess, workload: tuple[int, int]) -> EchoResult:
        connections, size = workload
        coro = measure_echo(server, connections, size, settings)
        result = run_measurement(coro, lambda error: failed(workload, error))
        result.server, result.repeat = spec.name, repeat
        return result

    return measure_workloads(spec, settings.pin, workloads, measure, failed, _progress)


def _progress(r: EchoResult) -> str:
    head = f"[run {r.repeat}] {r.server:<18} {r.connections:>3} conns {r.size:>6} B: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.messages_per_s / 1000:7.1f} k msg/s, p50 {fmt_num(r.p50_ms, '.2f')} ms, "
        f"p99 {fmt_num(r.p99_ms, '.2f')} ms, lost {r.lost}, wrong size {r.wrong_size}, "
        f"closed {r.closed}, server CPU {fmt_pct(r.server_cpu)}, "
        f"load generator CPU {fmt_pct(r.bench_cpu)}, others {fmt_pct(r.other_cpu)}"
    )


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.echo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, one run per row")
    p.add_argument("--conns", default="1,50", help="connections, comma-separated")
    p.add_argument("--sizes", default="32,16384", help="message sizes in bytes")
    p.add_argument("--servers", default=",".join(SERVERS), help="of: " + ",".join(SERVERS))
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 0.5)")
    p.add_argument("--repeat", type=int, help="runs per configuration (default 3)")
    p.add_argument("--window", type=int, default=16, help="messages in flight per connection")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.conn_counts = positive_ints(p, "--conns", args.conns)
    args.msg_sizes = positive_ints(p, "--sizes", args.sizes)
    args.server_keys = server_keys(p, args.servers, SERVERS)
    args.server_names = [SERVERS[k].name for k in args.server_keys]
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1 or args.window < 1:
        p.error("--duration, --repeat and --window must be positive, --warmup not negative")
    args.pin = not args.no_pin and pinning_available()
    args.settings = EchoSettings(args.window, args.warmup, args.duration, args.pin)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.echo", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    workloads = [(c, s) for c in args.conn_counts for s in args.msg_sizes]
    results: list[EchoResult] = []
    started = time.monotonic()
    # Repeats outermost: a slow spell of a shared machine hits every server alike.
    for repeat in range(1, args.repeat + 1):
        for key in args.server_keys:
            results += run_server(SERVERS[key], workloads, repeat, args.settings)
    summaries = summarise_echo(results, args.server_names)
    write_echo_report(args.out, echo_report(summaries, results, args, command))
    save_json(args.json, results, summaries)
    print()
    print(echo_table(summaries))
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
