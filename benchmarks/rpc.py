"""Message layer benchmark: JSON-RPC calls and channel fan-out, against the same by hand.

Calls: 1 and 50 connections, each keeping 16 requests ``add(i, 1)`` in flight, in JSON
(text frames) and msgpack (binary frames), against three servers under granian RSGI:
raw RSGI answering by hand (``benchmarks/apps/raw_rpc.py``), gobstopper's WebSocket
layer answering by hand (``gob_ws_rpc.py``), and gobstopper's message layer
(``gob_rpc.py``, ``@rpc.method()`` served by ``rpc.serve``).

Channels: 100 and 1,000 subscribers (half to ``news.sport``, half to ``news.*``), one
publisher keeping 128 ``publish(data)`` requests in flight, each delivered to every
subscriber as an ``rpc.message`` notification: ``rpc.publish`` on the message layer,
against ``manager.broadcast()`` to a room on the WebSocket layer, by hand.

Each server runs alone (one worker, uvloop, pinned to core 1 when it can); the load
generator (``rpc_loadgen.py``, picows) runs in this process, pinned to core 0.

    python -m benchmarks.rpc            # full run, writes docs/benchmarks.md
    python -m benchmarks.rpc --quick    # shorter, one repeat

Results go between the ``<!-- rpc:begin -->`` and ``<!-- rpc:end -->`` markers of the
output file (the section is appended when they are missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cli import add_retry_options, check_retry_options, positive_ints, server_keys
from .loadgen import MESSAGE_BYTES, RING, RunResult, Settings
from .report import (
    Summary,
    _median,
    _plural,
    _version,
    by_workload,
    closing_lines,
    fmt_num,
    fmt_pct,
    log_problems,
    machine,
    measured,
    rate_figures,
    replace_section,
    round_trip_row,
    save_json,
    source_revision,
    spread,
    summarise,
    table,
)
from .rpc_loadgen import (
    CHANNEL,
    ENCODINGS,
    PATTERN,
    RPCResult,
    RPCSettings,
    measure_channel,
    measure_rpc,
    notification_bytes,
)
from .servers import (
    ROOT,
    ServerProcess,
    ServerSpec,
    _granian,
    event_loop_name,
    least_disturbed,
    measure_on,
    measure_workloads,
    pinning_available,
    run_measurement,
)

__all__ = ["BEGIN", "END", "SERVERS", "CallSummary", "channel_progress", "main", "overhead"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- rpc:begin -->"
END = "<!-- rpc:end -->"
RAW = "raw RSGI"
WS_LAYER = "gobstopper WebSocket"
MESSAGES = "gobstopper messages"

#: key -> server. The WebSocket layer by hand is the baseline of the ratios.
SERVERS: dict[str, ServerSpec] = {
    "raw": ServerSpec(RAW, _granian("benchmarks.apps.raw_rpc:app", "rsgi")),
    "gob-ws": ServerSpec(WS_LAYER, _granian("benchmarks.apps.gob_ws_rpc:app", "rsgi")),
    "gob-rpc": ServerSpec(MESSAGES, _granian("benchmarks.apps.gob_rpc:app", "rsgi")),
}
#: The servers that publish to channels (the raw RSGI app only answers calls).
CHANNEL_SERVERS = ("gob-ws", "gob-rpc")


# -- calls --------------------------------------------------------------------------------


def run_calls(
    spec: ServerSpec,
    workloads: Sequence[tuple[int, str]],
    repeat: int,
    settings: RPCSettings,
    args: argparse.Namespace,
) -> list[RPCResult]:
    """Start one server, measure every workload on it (fresh connections each), stop it.

    A workload during which other processes of the machine used more than
    ``--max-other`` of a core is measured again (``--retries`` times at most), keeping
    the least disturbed attempt: the decision looks only at the machine's other load.
    """

    def failed(workload: tuple[int, str], error: str) -> RPCResult:
        connections, encoding = workload
        return RPCResult(spec.name, connections, encoding, repeat, error=error)

    def attempt(server: ServerProcess, workload: tuple[int, str]) -> RPCResult:
        connections, encoding = workload
        coro = measure_rpc(server, connections, encoding, settings)
        result = run_measurement(coro, lambda error: failed(workload, error))
        result.server, result.repeat = spec.name, repeat
        return result

    def measure(server: ServerProcess, workload: tuple[int, str]) -> RPCResult:
        return least_disturbed(
            lambda: attempt(server, workload),
            args.retries,
            args.max_other,
            _call_progress,
            "others were busy: again",
        )

    return measure_workloads(spec, settings.pin, workloads, measure, failed, _call_progress)


def _call_progress(r: RPCResult) -> str:
    head = f"[run {r.repeat}] {r.server:<20} {r.connections:>3} conns {r.encoding:>7}: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.calls_per_s / 1000:7.1f} k calls/s, p50 {fmt_num(r.p50_ms, '.2f')} ms, "
        f"p99 {fmt_num(r.p99_ms, '.2f')} ms, lost {r.lost}, wrong {r.wrong}, "
        f"closed {r.closed}, server CPU {fmt_pct(r.server_cpu)}, "
        f"load generator CPU {fmt_pct(r.bench_cpu)}, others {fmt_pct(r.other_cpu)}"
    )


@dataclass
class CallSummary:
    server: str
    connections: int
    encoding: str
    runs: int
    failed: int
    calls_per_s: float | None
    low: float | None
    high: float | None
    ratio: float | None  # to the WebSocket layer by hand, paired within each repeat
    p50_ms: float | None
    p99_ms: float | None
    lost: int
    wrong: int
    closed: int
    server_cpu: float | None
    bench_cpu: float | None


def summarise_calls(results: Sequence[RPCResult], servers: Sequence[str]) -> list[CallSummary]:
    summaries: list[CallSummary] = []
    order = {e: i for i, e in enumerate(ENCODINGS)}
    rows = by_workload(
        results,
        lambda r: (r.connections, r.encoding),
        servers,
        WS_LAYER,
        order=lambda w: (w[0], order[w[1]]),
    )
    for (connections, encoding), name, runs, baseline in rows:
        ok = [r for r in runs if r.error is None]
        summaries.append(
            CallSummary(
                server=name,
                connections=connections,
                encoding=encoding,
                calls_per_s=_median([r.calls_per_s for r in ok]),
                lost=sum(r.lost for r in ok),
                wrong=sum(r.wrong for r in ok),
                **rate_figures(runs, baseline, lambda r: r.calls_per_s),
            )
        )
    return summaries


def call_table(summaries: Sequence[CallSummary]) -> str:
    lines = [
        "| server | connections | encoding | calls/s | ratio to WebSocket layer | p50 ms "
        "| p99 ms | server CPU | load generator CPU | runs (min-max) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        counts = [(s.lost, "lost"), (s.wrong, "wrong"), (s.closed, "closed")]
        leading = [s.server, str(s.connections), s.encoding]
        lines.append(round_trip_row(s, leading, s.calls_per_s, counts))
    return "\n".join(lines)


# -- channels -----------------------------------------------------------------------------


def run_channel(
    spec: ServerSpec, receivers: int, repeat: int, settings: Settings, args: argparse.Namespace
) -> RunResult:
    """Start the server, measure one room size in a fresh event loop, stop the server;
    again, on a fresh server, while other processes were busy (as ``run_calls``)."""

    def attempt() -> RunResult:
        result, problems = measure_on(
            spec,
            settings.pin,
            lambda server: measure_channel(server.port, receivers, settings, server),
            lambda error: RunResult(spec.name, receivers, repeat, error=error),
        )
        result.server, result.repeat, result.log_problems = spec.name, repeat, problems
        return result

    return least_disturbed(
        attempt, args.retries, args.max_other, channel_progress, "others were busy: again"
    )


def channel_progress(r: RunResult, extra: str = "") -> str:
    """One channel run's progress line (``extra``: more figures, after the checks)."""
    head = f"[run {r.repeat}] {r.server:<20} {r.receivers:>5} subscribers: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.deliveries_per_s / 1000:7.1f} k deliveries/s, p50 {fmt_num(r.p50_ms, '.1f')} ms, "
        f"p99 {fmt_num(r.p99_ms, '.1f')} ms, gaps {r.gaps}, out of order {r.out_of_order}, "
        f"{extra}closed {r.closed}, server CPU {fmt_pct(r.server_cpu)}, "
        f"load generator CPU {fmt_pct(r.bench_cpu)}, others {fmt_pct(r.other_cpu)}"
    )


# -- report -------------------------------------------------------------------------------


def overhead(calls: Sequence[CallSummary], channels: Sequence[Summary]) -> list[str]:
    """One line per workload: the message layer's rate over the WebSocket layer's."""
    lines = []
    for s in calls:
        if s.server == MESSAGES and s.ratio is not None:
            lines.append(
                f"- calls, {_plural(s.connections, 'connection')}, {s.encoding}: "
                f"{s.ratio:.2f} of the WebSocket layer's calls/s"
            )
    for c in channels:
        if c.server == MESSAGES and c.ratio is not None:
            lines.append(
                f"- channels, {c.receivers:,} subscribers: {c.ratio:.2f} of the WebSocket "
                "layer's deliveries/s"
            )
    return lines


def rpc_report(
    calls: Sequence[RPCResult],
    channels: Sequence[RunResult],
    call_summaries: Sequence[CallSummary],
    channel_summaries: Sequence[Summary],
    args: argparse.Namespace,
    command: str,
) -> str:
    everything: list[RPCResult | RunResult] = [*calls, *channels]
    errors = [
        f"{r.server}, run {r.repeat}: `{r.error.splitlines()[0][:200]}`"
        for r in everything
        if r.error
    ]
    loads = [r.other_cpu for r in everything if r.other_cpu is not None]
    again = sum(r.attempts > 1 for r in everything)
    others = (
        f"a run was measured again (at most {_plural(args.retries, 'time')}, the least "
        f"disturbed attempt kept) when other processes used more than "
        f"{args.max_other * 100:.0f} % of a core, {again} of {len(everything)}; in the "
        f"runs kept they used {min(loads) * 100:.0f}-{max(loads) * 100:.0f} % of a core"
        if loads
        else "the load of other processes was not measured"
    )
    rows: list[CallSummary | Summary] = [*call_summaries, *channel_summaries]
    parts = [BEGIN, measured(command), ""]
    if call_summaries:
        parts += ["Calls: `add(a, b)`, round trips per second.", "", call_table(call_summaries), ""]
    if channel_summaries:
        header = table(channel_summaries).replace("ratio to raw RSGI", "ratio to WebSocket layer")
        header = header.replace("| receivers |", "| subscribers |")
        parts += ["Channels: one publisher, deliveries per second.", "", header, ""]
    lines = overhead(call_summaries, channel_summaries)
    if lines:
        parts += ["The message layer against the same work by hand on the WebSocket layer:", ""]
        parts += [*lines, ""]
    frame = len(notification_bytes("x" * MESSAGE_BYTES))
    parts += [
        f"- Machine: {machine(args.pin)}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"msgspec {_version('msgspec')}, picows {_version('picows')}, uvloop "
        f"{_version('uvloop')}; gobstopper {_version('gobstopper-rt')} at {source_revision()}.",
        f"- Servers: granian RSGI with one worker, `--loop {event_loop_name()}`, "
        "`--no-access-log`; a fresh server for each server and run of the calls, and for "
        "each run of the channels.",
        f"- Calls: {args.window} requests in flight per connection, every answer parsed "
        f"and checked; {args.warmup:g} s of warm-up, then {args.duration:g} s measured.",
        f"- Channels: subscribers alternate between `{CHANNEL}` and `{PATTERN}` on the "
        "message layer (the WebSocket layer puts them all in one room); "
        f"{MESSAGE_BYTES} bytes of data in a {frame}-byte notification, at most "
        f"{args.fanout_window} publications in flight (the publisher sends publication k "
        f"once every subscriber has k-{args.fanout_window}); "
        f"{args.fanout_warmup:g} s of warm-up, then {args.duration:g} s measured.",
        f"- {_plural(args.repeat, 'run')} per row, the servers taking turns; rates, latency "
        "and CPU are medians over the runs, the ratio is the median of the ratios within "
        "each repeat; lost, wrong, gaps and out-of-order messages are totals.",
        f"- Noise: a shared machine; {spread(rows)}; {others}. Quote the ratios, measured "
        "side by side, rather than the absolute figures.",
    ]
    parts += closing_lines(errors, log_problems(everything))
    parts.append(END)
    return "\n".join(parts)


_INTRO = """## Message layer

`python -m benchmarks.rpc` measures gobstopper's message layer (`RPC`): JSON-RPC calls
and channel fan-out, against the same work written by hand on gobstopper's WebSocket
layer, and (for calls) on raw RSGI.
"""


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.rpc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, one run per row")
    p.add_argument("--conns", default="1,50", help="connections making calls, comma-separated")
    p.add_argument("--encodings", default=",".join(ENCODINGS), help="of: " + ",".join(ENCODINGS))
    p.add_argument("--rooms", default="100,1000", help="subscribers per channel, comma-separated")
    p.add_argument("--servers", default=",".join(SERVERS), help="of: " + ",".join(SERVERS))
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds before measuring calls (default 0.5)")
    p.add_argument(
        "--fanout-warmup", type=float, help="seconds before measuring channels (default 1)"
    )
    p.add_argument("--repeat", type=int, help="runs per configuration (default 3)")
    p.add_argument("--window", type=int, default=16, help="calls in flight per connection")
    p.add_argument(
        "--fanout-window", type=int, default=Settings.window, help="publications in flight"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    add_retry_options(p)
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    if args.fanout_warmup is None:
        args.fanout_warmup = 0.5 if args.quick else 1.0
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.conn_counts = positive_ints(p, "--conns", args.conns, allow_empty=True)
    args.room_sizes = positive_ints(p, "--rooms", args.rooms, allow_empty=True)
    args.encoding_names = [e for e in ENCODINGS if e in args.encodings.split(",")]
    unknown_encodings = set(args.encodings.split(",")) - set(ENCODINGS) - {""}
    if unknown_encodings:
        p.error(f"unknown encoding(s) {sorted(unknown_encodings)}; choose from {ENCODINGS}")
    args.server_keys = server_keys(p, args.servers, SERVERS)
    if args.duration <= 0 or args.warmup < 0 or args.fanout_warmup < 0 or args.repeat < 1:
        p.error("--duration and --repeat must be positive, the warm-ups not negative")
    check_retry_options(p, args)
    if args.window < 1 or not 1 <= args.fanout_window <= RING // 4:
        p.error(f"--window must be positive, --fanout-window from 1 to {RING // 4}")
    args.pin = not args.no_pin and pinning_available()
    args.call_settings = RPCSettings(args.window, args.warmup, args.duration, args.pin)
    args.channel_settings = Settings(
        args.fanout_window, args.fanout_warmup, args.duration, 4, args.pin
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.rpc", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    workloads = [(c, e) for c in args.conn_counts for e in args.encoding_names]
    channel_keys = [k for k in args.server_keys if k in CHANNEL_SERVERS]
    calls: list[RPCResult] = []
    channels: list[RunResult] = []
    started = time.monotonic()
    # Repeats outermost: a slow spell of a shared machine hits every server alike.
    for repeat in range(1, args.repeat + 1):
        if workloads:
            for key in args.server_keys:
                calls += run_calls(SERVERS[key], workloads, repeat, args.call_settings, args)
        for receivers in args.room_sizes:
            for key in channel_keys:
                result = run_channel(SERVERS[key], receivers, repeat, args.channel_settings, args)
                channels.append(result)
                print(channel_progress(result), flush=True)
    call_summaries = summarise_calls(calls, [SERVERS[k].name for k in args.server_keys])
    channel_summaries = summarise(channels, [SERVERS[k].name for k in channel_keys])
    section = rpc_report(calls, channels, call_summaries, channel_summaries, args, command)
    replace_section(args.out, BEGIN, END, section, _INTRO + "\n" + section)
    save_json(args.json, [*calls, *channels], [*call_summaries, *channel_summaries])
    print()
    print(section)
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    everything: list[RPCResult | RunResult] = [*calls, *channels]
    return 1 if any(r.error is not None for r in everything) else 0


if __name__ == "__main__":
    sys.exit(main())
