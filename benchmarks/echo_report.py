"""Summaries of the echo runs, and their markdown section."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .echo_loadgen import EchoResult
from .report import (
    _median,
    _plural,
    _version,
    by_workload,
    closing_lines,
    fmt_pct,
    log_problems,
    machine,
    measured,
    rate_figures,
    replace_section,
    round_trip_row,
    spread,
)
from .report import source_revision as _source_revision
from .servers import event_loop_name

__all__ = [
    "BEGIN",
    "END",
    "GOAL",
    "EchoSummary",
    "echo_report",
    "echo_table",
    "summarise_echo",
    "write_echo_report",
]

BEGIN = "<!-- echo:begin -->"
END = "<!-- echo:end -->"
GOAL = (
    "gobstopper RSGI at 95% or more of raw RSGI on echo; "
    "on its best server within 10% of the best peer"
)
BASELINE = "raw RSGI"
GOB_RSGI = "gobstopper RSGI"
PEERS = ("Starlette uvicorn", "websockets")


@dataclass
class EchoSummary:
    server: str
    connections: int
    size: int
    runs: int
    failed: int
    messages_per_s: float | None
    low: float | None
    high: float | None
    ratio: float | None
    p50_ms: float | None
    p99_ms: float | None
    lost: int
    wrong_size: int
    closed: int
    server_cpu: float | None
    bench_cpu: float | None


def summarise_echo(results: Sequence[EchoResult], servers: Sequence[str]) -> list[EchoSummary]:
    summaries: list[EchoSummary] = []
    rows = by_workload(results, lambda r: (r.connections, r.size), servers, BASELINE)
    for (connections, size), name, runs, baseline in rows:
        ok = [r for r in runs if r.error is None]
        summaries.append(
            EchoSummary(
                server=name,
                connections=connections,
                size=size,
                messages_per_s=_median([r.messages_per_s for r in ok]),
                lost=sum(r.lost for r in ok),
                wrong_size=sum(r.wrong_size for r in ok),
                **rate_figures(runs, baseline, lambda r: r.messages_per_s),
            )
        )
    return summaries


def _size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def echo_table(summaries: Sequence[EchoSummary]) -> str:
    lines = [
        "| server | connections | message size | msg/s | ratio to raw RSGI | p50 ms | p99 ms "
        "| server CPU | load generator CPU | runs (min-max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        counts = [(s.lost, "lost"), (s.wrong_size, "wrong size"), (s.closed, "closed")]
        leading = [s.server, str(s.connections), _size(s.size)]
        lines.append(round_trip_row(s, leading, s.messages_per_s, counts))
    return "\n".join(lines)


def goal_verdicts(summaries: Sequence[EchoSummary]) -> list[str]:
    """Per workload: gobstopper RSGI against raw RSGI, and gobstopper's best server
    (of those measured) against the best peer (Starlette on uvicorn, `websockets`)."""
    verdicts: list[str] = []
    for connections, size in sorted({(s.connections, s.size) for s in summaries}):
        rows = [
            s
            for s in summaries
            if (s.connections, s.size) == (connections, size) and s.messages_per_s is not None
        ]
        parts: list[str] = []
        gob_rsgi = next((s for s in rows if s.server == GOB_RSGI), None)
        if gob_rsgi is not None and gob_rsgi.ratio is not None:
            met = "met" if gob_rsgi.ratio >= 0.95 else "not met"
            parts.append(f"RSGI vs raw {gob_rsgi.ratio:.2f} ({met})")
        # Ratios to raw RSGI, paired within each repeat, compare servers measured minutes
        # apart better than their medians do.
        gob = [s for s in rows if s.server.startswith("gobstopper") and s.ratio]
        peers = [s for s in rows if s.server in PEERS and s.ratio]
        if gob and peers:
            best = max(gob, key=lambda s: s.ratio or 0.0)
            peer = max(peers, key=lambda s: s.ratio or 0.0)
            share = (best.ratio or 0.0) / (peer.ratio or 1.0)
            met = "met" if share >= 0.90 else "not met"
            parts.append(
                f"best gobstopper ({best.server}) at {share:.2f} of the best peer "
                f"({peer.server}) ({met})"
            )
        if parts:
            verdicts.append(f"{connections} conn., {_size(size)}: " + "; ".join(parts))
    return verdicts


def _headroom(summaries: Sequence[EchoSummary]) -> str:
    raw = [s for s in summaries if s.server == BASELINE and s.bench_cpu is not None]
    if not raw:
        return ""
    cells = ", ".join(
        f"{s.connections} conn. {_size(s.size)}: server {fmt_pct(s.server_cpu)}, "
        f"load generator {fmt_pct(s.bench_cpu)}"
        for s in raw
    )
    top = max(s.bench_cpu or 0.0 for s in summaries)
    return (
        f"- Load generator headroom, on the raw RSGI rows: {cells}. Its highest share "
        f"on any row was {fmt_pct(top)} of its core."
    )


def echo_report(
    summaries: Sequence[EchoSummary],
    results: Sequence[EchoResult],
    args: argparse.Namespace,
    command: str,
) -> str:
    from .servers import UVICORN_WS

    errors = [
        f"{r.server}, {r.connections} conn., {_size(r.size)}, run {r.repeat}: "
        f"`{r.error.splitlines()[0][:200]}`"
        for r in results
        if r.error is not None
    ]
    loads = [r.other_cpu for r in results if r.other_cpu is not None]
    others = (
        f"other processes used {min(loads) * 100:.0f}-{max(loads) * 100:.0f} % of a core "
        "during the runs"
        if loads
        else "the load of other processes was not measured"
    )
    parts = [BEGIN, measured(command), "", echo_table(summaries), "", f"Goal: {GOAL}.", ""]
    parts += [f"- {v}" for v in goal_verdicts(summaries)]
    parts += [
        "",
        f"- Machine: {machine(args.pin)}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"uvicorn {_version('uvicorn')}, Starlette {_version('starlette')}, websockets "
        f"{_version('websockets')}, picows {_version('picows')}, uvloop "
        f"{_version('uvloop')}; gobstopper {_version('gobstopper-rt')} at {_source_revision()}.",
        f"- Servers: granian with one worker, `--loop {event_loop_name()}`, "
        f"`--no-access-log`; uvicorn with `--loop uvloop --ws {UVICORN_WS}` (of the "
        "WebSocket implementations installed here, the faster on echo), one process; "
        "the `websockets` server (`benchmarks/apps/websockets_app.py`) on uvloop, "
        "without compression.",
        f"- Settings: {args.window} text messages in flight per connection; "
        f"{args.warmup:g} s of warm-up, then {args.duration:g} s measured; "
        f"{_plural(args.repeat, 'run')} per row, the servers taking turns, a fresh server "
        "for each server and run, fresh connections for each row.",
        "- msg/s counts round trips completed; latency is each round trip's time "
        "(send to echo received), which at full speed is mostly the window waiting its "
        "turn. msg/s, latency and CPU are medians over the runs; the ratio is the median "
        "of the ratios within each repeat.",
        "- CPU is the share of one core used while measuring: a server near 100 % is the "
        "limit; a load generator well below it is not.",
    ]
    headroom = _headroom(summaries)
    if headroom:
        parts.append(headroom)
    parts.append(
        f"- Noise: a shared machine; {spread(summaries)}; {others}. Quote the ratios, "
        "measured side by side, rather than the absolute figures."
    )
    parts += closing_lines(errors, log_problems(results))
    parts.append(END)
    return "\n".join(parts)


_INTRO = """## Echo: round trips

`python -m benchmarks.echo` measures echo: each of 1 or 50 connections keeps 16 text
messages (32 bytes or 16 KiB) in flight on `/ws/echo`, and the server sends each one
back. The baseline is a raw RSGI app (`benchmarks/apps/raw_echo.py`); gobstopper's app
(`benchmarks/apps/gob_echo.py`) runs under granian RSGI, granian ASGI and uvicorn; the
peers are Starlette on uvicorn (`benchmarks/apps/starlette_app.py`) and the
`websockets` library's own server (`benchmarks/apps/websockets_app.py`).
"""


def write_echo_report(out: Path, section: str) -> None:
    """Replace the section between the echo markers, or append it with its heading."""
    replace_section(out, BEGIN, END, section, _INTRO + "\n" + section)
