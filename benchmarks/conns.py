"""Connection benchmark: memory per idle connection, and connection churn, six servers.

For each server (raw RSGI; gobstopper under granian RSGI, granian ASGI and uvicorn;
Starlette on uvicorn; the ``websockets`` library's server, all on their echo apps), this
starts it (one process, one worker, uvloop, pinned to core 1 when it can) and, from
this process (pinned to core 0), with picows:

- opens up to 10,000 connections (fewer if the open-file limit is lower), makes one
  round trip on each, and divides the growth of the server's resident memory by their
  number;
- then, on a fresh server, opens and closes connections (with a close handshake) from
  8 loops for a fixed time, and counts them.

    python -m benchmarks.conns            # full run, writes docs/benchmarks.md
    python -m benchmarks.conns --quick    # 1,000 connections, shorter, one repeat

Results go between the ``<!-- conns:begin -->`` and ``<!-- conns:end -->`` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli import in_turns, server_keys
from .conns_loadgen import ConnResult, ConnSettings, measure_churn, measure_memory
from .report import (
    _median,
    _paired_ratio,
    _plural,
    _version,
    closing_lines,
    fmt_num,
    fmt_pct,
    log_problems,
    machine,
    measured,
    replace_section,
    save_json,
    source_revision,
)
from .servers import (
    ROOT,
    ServerProcess,
    ServerSpec,
    measure_on,
    pinning_available,
    raise_open_files_limit,
    server_specs,
)

__all__ = ["SERVERS", "ConnSummary", "main", "memory_goal", "summarise_conns"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- conns:begin -->"
END = "<!-- conns:end -->"
SERVERS: dict[str, ServerSpec] = server_specs("echo")
GOB = ("gobstopper RSGI", "gobstopper ASGI", "gobstopper uvicorn")
PEERS = ("Starlette uvicorn", "websockets")
FILES_PER_SIDE_SPARE = 512  # descriptors kept for everything but the connections


def _one(
    spec: ServerSpec,
    repeat: int,
    settings: ConnSettings,
    measure: Callable[[ServerProcess, ConnSettings], Coroutine[Any, Any, ConnResult]],
) -> ConnResult:
    result, problems = measure_on(
        spec,
        settings.pin,
        lambda server: measure(server, settings),
        lambda error: ConnResult(spec.name, repeat, error=error),
    )
    result.server, result.repeat, result.log_problems = spec.name, repeat, problems
    return result


def run_server(spec: ServerSpec, repeat: int, settings: ConnSettings) -> ConnResult:
    """Memory on one fresh server, churn on another; one result with both."""
    memory = _one(spec, repeat, settings, measure_memory)
    churn = _one(spec, repeat, settings, measure_churn)
    memory.churn_per_s = churn.churn_per_s
    memory.churn_p50_ms, memory.churn_p99_ms = churn.churn_p50_ms, churn.churn_p99_ms
    memory.failed += churn.failed
    memory.server_cpu, memory.bench_cpu = churn.server_cpu, churn.bench_cpu
    memory.other_cpu = churn.other_cpu
    memory.log_problems = sorted(set(memory.log_problems) | set(churn.log_problems))
    errors = [e for e in (memory.error, churn.error) if e is not None]
    memory.error = "; ".join(errors) if errors else None
    return memory


# -- report -------------------------------------------------------------------------------


@dataclass
class ConnSummary:
    server: str
    runs: int
    failed_runs: int
    connections: int
    rss_per_connection: float | None  # bytes
    memory_ratio: float | None  # to raw RSGI
    open_rate: float | None
    churn_per_s: float | None
    churn_ratio: float | None
    churn_p50_ms: float | None
    churn_p99_ms: float | None
    failed: int
    server_cpu: float | None
    bench_cpu: float | None


def summarise_conns(results: Sequence[ConnResult], servers: Sequence[str]) -> list[ConnSummary]:
    baseline = [r for r in results if r.server == servers[0]]
    summaries = []
    for name in servers:
        runs = [r for r in results if r.server == name]
        if not runs:
            continue
        ok = [r for r in runs if r.error is None]
        summaries.append(
            ConnSummary(
                server=name,
                runs=len(runs),
                failed_runs=len(runs) - len(ok),
                connections=max((r.connections for r in ok), default=0),
                rss_per_connection=_median([r.rss_per_connection for r in ok]),
                memory_ratio=_paired_ratio(runs, baseline, lambda r: r.rss_per_connection),
                open_rate=_median([r.open_rate for r in ok]),
                churn_per_s=_median([r.churn_per_s for r in ok]),
                churn_ratio=_paired_ratio(runs, baseline, lambda r: r.churn_per_s),
                churn_p50_ms=_median([r.churn_p50_ms for r in ok]),
                churn_p99_ms=_median([r.churn_p99_ms for r in ok]),
                failed=sum(r.failed for r in runs),
                server_cpu=_median([r.server_cpu for r in ok]),
                bench_cpu=_median([r.bench_cpu for r in ok]),
            )
        )
    return summaries


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f} KiB"


def conns_table(summaries: Sequence[ConnSummary]) -> str:
    lines = [
        "| server | idle connections | memory per connection | ratio to raw RSGI "
        "| opened/s (filling) | churn: opened and closed/s | ratio to raw RSGI "
        "| churn p50 ms | churn p99 ms | failed | server CPU (churn) "
        "| load generator CPU (churn) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        cells = [
            s.server,
            str(s.connections),
            _kib(s.rss_per_connection),
            fmt_num(s.memory_ratio, ".2f"),
            fmt_num(s.open_rate, ".0f"),
            fmt_num(s.churn_per_s, ".0f"),
            fmt_num(s.churn_ratio, ".2f"),
            fmt_num(s.churn_p50_ms, ".2f"),
            fmt_num(s.churn_p99_ms, ".2f"),
            str(s.failed),
            fmt_pct(s.server_cpu),
            fmt_pct(s.bench_cpu),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_goal(summaries: Sequence[ConnSummary]) -> str | None:
    """gobstopper on its best server within 10 % of the best peer on memory."""
    rows = {s.server: s for s in summaries if s.rss_per_connection is not None}
    gob = [rows[n] for n in GOB if n in rows]
    peers = [rows[n] for n in PEERS if n in rows]
    if not gob or not peers:
        return None
    best = min(gob, key=lambda s: s.rss_per_connection or 0.0)
    peer = min(peers, key=lambda s: s.rss_per_connection or 0.0)
    assert best.rss_per_connection is not None and peer.rss_per_connection is not None
    ratio = best.rss_per_connection / peer.rss_per_connection
    met = "met" if ratio <= 1.10 else "not met"
    return (
        f"memory per idle connection: best gobstopper ({best.server}, "
        f"{_kib(best.rss_per_connection)}) at {ratio:.2f} of the best peer ({peer.server}, "
        f"{_kib(peer.rss_per_connection)}) ({met})"
    )


def conns_report(
    summaries: Sequence[ConnSummary],
    results: Sequence[ConnResult],
    args: argparse.Namespace,
    command: str,
) -> str:
    errors = [
        f"{r.server}, run {r.repeat}: `{r.error.splitlines()[0][:200]}`"
        for r in results
        if r.error is not None
    ]
    goal = memory_goal(summaries)
    parts = [BEGIN, measured(command), "", conns_table(summaries), ""]
    if goal:
        parts += [
            "Goal: gobstopper on its best server within 10% of the best peer on memory "
            "per connection.",
            "",
            f"- {goal}",
            "",
        ]
    parts += [
        f"- Machine: {machine(args.pin)}; open-file limit {args.files_limit}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"uvicorn {_version('uvicorn')}, Starlette {_version('starlette')}, websockets "
        f"{_version('websockets')}, picows {_version('picows')}; gobstopper "
        f"{_version('gobstopper-rt')} at {source_revision()}.",
        f"- Memory: {args.settings.connections} connections opened {100} at a time, one "
        "32-byte round trip on each (so every handler is running), then the growth of "
        "the server's resident memory (all its processes) since the first connection, "
        "divided by their number. 'Opened/s' is how fast they were opened and answered.",
        f"- Churn: {args.settings.churn_loops} loops each open a connection, close it "
        "(close handshake, then the TCP connection) and start again; "
        f"{args.settings.warmup:g} s of warm-up, {args.settings.churn_seconds:g} s "
        "measured, on a fresh server. p50/p99 are one connection's open plus close.",
        f"- {_plural(args.repeat, 'run')} per server, the servers taking turns; medians "
        "over the runs, ratios paired within each repeat. 'Failed' counts connections "
        "refused, dropped or timed out, over all runs.",
    ]
    parts += closing_lines(errors, log_problems(results))
    parts.append(END)
    return "\n".join(parts)


_INTRO = """## Connections: memory per idle connection, and churn

`python -m benchmarks.conns` opens many idle connections to each server's echo app and
reads the server's memory, then opens and closes connections as fast as a few loops
can. The servers and apps are the echo benchmark's.
"""


def write_conns_report(out: Path, section: str) -> None:
    replace_section(out, BEGIN, END, section, _INTRO + "\n" + section)


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.conns",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1,000 connections, 1 s, one run")
    p.add_argument("--connections", type=int, help="idle connections (default 10000)")
    p.add_argument("--loops", type=int, default=8, help="churn loops (default 8)")
    p.add_argument("--duration", type=float, help="seconds of churn measured (default 2)")
    p.add_argument("--repeat", type=int, help="runs per server (default 3)")
    p.add_argument("--servers", default=",".join(SERVERS), help="of: " + ",".join(SERVERS))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    wanted = args.connections or (1000 if args.quick else 10_000)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if wanted < 1 or args.loops < 1 or args.duration <= 0 or args.repeat < 1:
        p.error("--connections, --loops, --duration and --repeat must be positive")
    args.server_keys = server_keys(p, args.servers, SERVERS)
    args.server_names = [SERVERS[k].name for k in args.server_keys]
    # This process and the server each hold one descriptor per connection; the server
    # inherits the limit set here.
    args.files_limit = raise_open_files_limit(wanted + FILES_PER_SIDE_SPARE)
    connections = min(wanted, args.files_limit - FILES_PER_SIDE_SPARE)
    if connections < 1:
        p.error(f"the open-file limit ({args.files_limit}) leaves no room for connections")
    args.pin = not args.no_pin and pinning_available()
    args.settings = ConnSettings(
        connections=connections,
        churn_loops=args.loops,
        churn_seconds=args.duration,
        warmup=0.2 if args.quick else 0.3,
        pin=args.pin,
    )
    return args


def _progress(r: ConnResult) -> str:
    head = f"[run {r.repeat}] {r.server:<18}: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.connections} idle connections, {_kib(r.rss_per_connection)} each, "
        f"opened at {fmt_num(r.open_rate, '.0f')}/s; churn {fmt_num(r.churn_per_s, '.0f')}/s "
        f"(p50 {fmt_num(r.churn_p50_ms, '.2f')} ms, p99 {fmt_num(r.churn_p99_ms, '.2f')} ms), "
        f"failed {r.failed}, server CPU {fmt_pct(r.server_cpu)}, "
        f"load generator CPU {fmt_pct(r.bench_cpu)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.conns", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    started = time.monotonic()
    results = in_turns(
        args.repeat,
        args.server_keys,
        lambda key, repeat: run_server(SERVERS[key], repeat, args.settings),
        _progress,
    )
    summaries = summarise_conns(results, args.server_names)
    write_conns_report(args.out, conns_report(summaries, results, args, command))
    save_json(args.json, results, summaries)
    print()
    print(conns_table(summaries))
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
