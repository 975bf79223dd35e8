"""Fan-out benchmark: one sender, one room of N receivers, eight servers.

For each server (three raw RSGI apps: never-awaited sends, the ceiling and the ratios'
baseline, a credit window, and start-then-await; gobstopper under granian RSGI, granian
ASGI and uvicorn; Starlette on uvicorn; the ``websockets`` library's server), each room
size, and each share of stalled receivers (0 and 5 % by default), this starts the server
(one worker, uvloop, pinned to core 1 when it can), connects N receivers and one sender
with picows from this process (pinned to core 0), and measures how many messages per
second reach the receivers that read, summed over all of them, and which side's core
was saturated.

The load generator (``loadgen.py``) keeps a bounded window of messages in flight and
checks every receiver's order; ``servers.py`` starts and stops granian; ``report.py``
writes the results. A run during which other processes of the machine were busy is
measured again (``--max-other``, ``--retries``).

    python -m benchmarks.fanout            # full run, writes docs/benchmarks.md
    python -m benchmarks.fanout --quick    # shorter, one repeat

Results go between the ``<!-- fanout:begin -->`` and ``<!-- fanout:end -->`` markers of
the output file (created when missing), and a bar plot next to it when matplotlib is
installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .cli import add_retry_options, check_retry_options, server_keys
from .loadgen import MESSAGE_BYTES, RING, RunResult, Settings, measure
from .report import (
    PLOT_NAME,
    fmt_num,
    fmt_pct,
    report,
    room_label,
    save_json,
    summarise,
    table,
    write_plot,
    write_report,
)
from .servers import (
    ROOT,
    ServerSpec,
    least_disturbed,
    measure_on,
    pinning_available,
    server_specs,
)

__all__ = ["SERVERS", "main", "run_once", "run_spec"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"


#: key -> server; the first one is the baseline of the ratios.
SERVERS: dict[str, ServerSpec] = server_specs("fanout")


def stalled_count(receivers: int, percent: float) -> int:
    """The number of stalled receivers for ``percent`` of a room (at least one if > 0)."""
    return max(1, round(receivers * percent / 100)) if percent > 0 else 0


def run_once(key: str, receivers: int, stalled: int, repeat: int, settings: Settings) -> RunResult:
    """Start the server, measure one configuration in a fresh event loop, stop the server."""
    return run_spec(SERVERS[key], receivers, stalled, repeat, settings)


def run_spec(
    spec: ServerSpec, receivers: int, stalled: int, repeat: int, settings: Settings
) -> RunResult:
    result, problems = measure_on(
        spec,
        settings.pin,
        lambda server: measure(server.port, receivers, settings, server, stalled),
        lambda error: RunResult(spec.name, receivers, repeat, stalled=stalled, error=error),
    )
    result.server, result.repeat, result.log_problems = spec.name, repeat, problems
    return result


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, one run per row")
    p.add_argument("--rooms", default="100,1000", help="room sizes, comma-separated")
    p.add_argument(
        "--stalled",
        default="0,5",
        help="percentages of receivers that stop reading, comma-separated (default 0,5)",
    )
    p.add_argument("--size", type=int, default=MESSAGE_BYTES, help="bytes per message (default 32)")
    p.add_argument(
        "--stalled-size",
        type=int,
        default=1024,
        help="bytes per message in the rows with stalled receivers (default 1024), large "
        "enough for a stalled socket to fill within the run",
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="of: " + ",".join(SERVERS))
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 1)")
    p.add_argument("--repeat", type=int, help="runs per configuration (default 3)")
    p.add_argument(
        "--window", type=int, default=Settings.window, help="messages in flight (default 128)"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=Settings.batch,
        help="messages waiting before a receiver is woken, 1 for each message (default 4)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    add_retry_options(p)
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    try:
        args.room_sizes = [int(r) for r in args.rooms.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rooms={args.rooms!r} is not a comma-separated list of integers")
    try:
        args.stalled_percents = [float(v) for v in args.stalled.split(",") if v.strip()]
    except ValueError:
        p.error(f"--stalled={args.stalled!r} is not a comma-separated list of numbers")
    if not args.stalled_percents or not all(0 <= v < 100 for v in args.stalled_percents):
        p.error("--stalled needs percentages from 0 to below 100")
    args.server_keys = server_keys(p, args.servers, SERVERS)
    args.server_names = [SERVERS[k].name for k in args.server_keys]
    if not args.room_sizes or min(args.room_sizes) < 1:
        p.error("--rooms needs positive room sizes")
    if not 1 <= args.window <= RING // 4:
        p.error(f"--window must be between 1 and {RING // 4}")
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        p.error("--duration and --repeat must be positive, --warmup not negative")
    check_retry_options(p, args)
    if args.batch < 1:
        p.error("--batch must be at least 1")
    if (
        min(args.size, args.stalled_size) < MESSAGE_BYTES
        or max(args.size, args.stalled_size) > 65535
    ):
        p.error(f"--size and --stalled-size must be from {MESSAGE_BYTES} to 65535 bytes")
    args.pin = not args.no_pin and pinning_available()
    args.settings = Settings(
        args.window, args.warmup, args.duration, args.batch, args.pin, args.size
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.fanout", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    results: list[RunResult] = []
    started = time.monotonic()
    # Repeats outermost: a slow spell of a shared machine hits every server alike.
    for repeat in range(1, args.repeat + 1):
        for receivers in args.room_sizes:
            for percent in args.stalled_percents:
                stalled = stalled_count(receivers, percent)
                size = args.stalled_size if stalled else args.size
                settings = replace(args.settings, size=size)
                for key in args.server_keys:
                    result = measure_quietly(key, receivers, stalled, repeat, settings, args)
                    results.append(result)
                    print(_progress(result), flush=True)
    summaries = summarise(results, args.server_names)
    plot_path = args.out.parent / PLOT_NAME
    plot = None
    if not args.no_plot and write_plot(plot_path, summaries, args.server_names):
        plot = PLOT_NAME
        print(f"wrote {plot_path}")
    write_report(args.out, report(summaries, results, args, command, plot))
    save_json(args.json, results, summaries)
    print()
    print(table(summaries))
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    failed = any(r.error is not None for r in results)
    return 1 if failed else 0


def measure_quietly(
    key: str,
    receivers: int,
    stalled: int,
    repeat: int,
    settings: Settings,
    args: argparse.Namespace,
) -> RunResult:
    """Run once; run again (``--retries`` times at most) while other processes of the
    machine used more than ``--max-other`` of a core. Keeps the least disturbed run."""
    return least_disturbed(
        lambda: run_once(key, receivers, stalled, repeat, settings),
        args.retries,
        args.max_other,
        _progress,
        "other processes were busy: measuring again",
    )


def _progress(r: RunResult) -> str:
    head = f"[run {r.repeat}] {r.server:<18} {room_label(r.receivers, r.stalled, r.size):>20}: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.deliveries_per_s / 1000:7.1f} k deliveries/s, p50 {fmt_num(r.p50_ms, '.1f')} ms, "
        f"p99 {fmt_num(r.p99_ms, '.1f')} ms, gaps {r.gaps}, out of order {r.out_of_order}, "
        f"closed {r.closed}, server CPU {fmt_pct(r.server_cpu)}, others {fmt_pct(r.other_cpu)}, "
        f"server memory +{(r.server_rss_growth or 0) / 2**20:.1f} MiB, "
        f"load generator CPU {fmt_pct(r.bench_cpu)} ({r.messages_per_read:.2f} messages per read)"
        + (f", {len(r.log_problems)} server log warning(s)" if r.log_problems else "")
    )


if __name__ == "__main__":
    sys.exit(main())
