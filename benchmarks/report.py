"""Summaries of the runs, and the report: a markdown section and a bar plot."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .loadgen import MESSAGE_BYTES, SAMPLE_MASK, RunResult
from .servers import ROOT, event_loop_name

__all__ = [
    "BEGIN",
    "END",
    "PLOT_NAME",
    "RAW_APPS",
    "RAW_NEVER",
    "SATURATED",
    "Summary",
    "by_workload",
    "closing_lines",
    "fmt_k",
    "fmt_mib",
    "fmt_num",
    "fmt_pct",
    "log_problems",
    "machine",
    "measured",
    "rate_figures",
    "raw_table",
    "report",
    "room_label",
    "round_trip_row",
    "runs_cell",
    "saturation",
    "save_json",
    "spread",
    "summarise",
    "table",
    "write_plot",
    "write_report",
]

PLOT_NAME = "benchmarks-fanout.png"
#: A server core (or load generator) at this share of its core or more is the limit.
SATURATED = 0.9
BEGIN = "<!-- fanout:begin -->"
END = "<!-- fanout:end -->"


@dataclass
class Summary:
    server: str
    receivers: int
    stalled: int
    size: int
    runs: int
    failed: int
    deliveries_per_s: float | None
    low: float | None
    high: float | None
    ratio: float | None
    p50_ms: float | None
    p99_ms: float | None
    gaps: int
    out_of_order: int
    closed: int
    bench_cpu: float | None
    messages_per_read: float | None
    server_cpu: float | None
    server_rss_growth: float | None  # bytes
    #: Which side was the limit: the server, the load generator, both, or neither.
    saturated: str = "-"
    #: Paired ratios of deliveries/s to each raw app of the run, by name (itself included).
    vs_raw: dict[str, float | None] = field(default_factory=dict)
    #: Paired ratio of p99 latency to the baseline's (the first server).
    p99_ratio: float | None = None

    @property
    def room(self) -> str:
        """The room, as the tables name it: ``100`` or ``100, 5 stalled, 1 KiB``."""
        return room_label(self.receivers, self.stalled, self.size)


def room_label(receivers: int, stalled: int, size: int) -> str:
    label = str(receivers)
    if stalled:
        label += f", {stalled} stalled"
    if size != MESSAGE_BYTES:
        label += f", {size // 1024} KiB" if size % 1024 == 0 else f", {size} B"
    return label


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _paired_ratio(
    runs: Sequence[Any], baseline: Sequence[Any], rate: Callable[[Any], float]
) -> float | None:
    """Median over the repeats of this server's rate over the baseline's in the same repeat.

    Runs of one repeat are measured minutes apart at most, so a machine that is slower
    for a while slows both sides of each ratio alike.
    """
    base = {r.repeat: rate(r) for r in baseline if r.error is None}
    ratios = [rate(r) / base[r.repeat] for r in runs if r.error is None and base.get(r.repeat)]
    return statistics.median(ratios) if ratios else None


def by_workload(
    results: Sequence[Any],
    workload: Callable[[Any], tuple[Any, ...]],
    servers: Sequence[str],
    baseline: str,
    order: Callable[[tuple[Any, ...]], Any] | None = None,
) -> Iterator[tuple[tuple[Any, ...], str, list[Any], list[Any]]]:
    """For each workload (sorted, by ``order`` when given), each server that ran it, in
    the order of ``servers``: the workload, the server, its runs, and the runs of
    ``baseline`` on that workload."""
    keys = {workload(r) for r in results}
    for key in sorted(keys, key=order) if order else sorted(keys):
        same = [r for r in results if workload(r) == key]
        base = [r for r in same if r.server == baseline]
        for name in servers:
            runs = [r for r in same if r.server == name]
            if runs:
                yield key, name, runs, base


def rate_figures(
    runs: Sequence[Any], baseline: Sequence[Any], rate: Callable[[Any], float]
) -> dict[str, Any]:
    """The figures every summary row has, over a server's runs of one workload: runs and
    failed runs, the slowest and fastest ``rate``, its ratio to the baseline's, the
    latency, connections closed, and CPU (medians over the runs that worked)."""
    ok = [r for r in runs if r.error is None]
    rates = [rate(r) for r in ok]
    return {
        "runs": len(runs),
        "failed": len(runs) - len(ok),
        "low": min(rates) if rates else None,
        "high": max(rates) if rates else None,
        "ratio": _paired_ratio(runs, baseline, rate),
        "p50_ms": _median([r.p50_ms for r in ok]),
        "p99_ms": _median([r.p99_ms for r in ok]),
        "closed": sum(r.closed for r in ok),
        "server_cpu": _median([r.server_cpu for r in ok]),
        "bench_cpu": _median([r.bench_cpu for r in ok]),
    }


#: The raw RSGI fan-out apps, the ceiling first (``benchmarks/apps/raw_fanout.py``).
RAW_NEVER = "raw never-awaited"
RAW_APPS = (RAW_NEVER, "raw credit", "raw await-all")


def summarise(results: Sequence[RunResult], servers: Sequence[str]) -> list[Summary]:
    summaries: list[Summary] = []
    rooms = by_workload(results, lambda r: (r.receivers, r.stalled, r.size), servers, servers[0])
    for (receivers, stalled, size), name, runs, baseline in rooms:
        ok = [r for r in runs if r.error is None]
        same = [
            r for r in results if (r.receivers, r.stalled, r.size) == (receivers, stalled, size)
        ]
        vs_raw = {
            raw: _paired_ratio(runs, [r for r in same if r.server == raw], _deliveries)
            for raw in RAW_APPS
            if raw in servers
        }
        figures = rate_figures(runs, baseline, _deliveries)
        summaries.append(
            Summary(
                server=name,
                receivers=receivers,
                stalled=stalled,
                size=size,
                deliveries_per_s=_median([r.deliveries_per_s for r in ok]),
                gaps=sum(r.gaps for r in ok),
                out_of_order=sum(r.out_of_order for r in ok),
                messages_per_read=_median([r.messages_per_read for r in ok]),
                server_rss_growth=_median([r.server_rss_growth for r in ok]),
                saturated=saturation(figures["server_cpu"], None, figures["bench_cpu"], False),
                vs_raw=vs_raw,
                p99_ratio=_paired_ratio(runs, baseline, lambda r: r.p99_ms or 0.0),
                **figures,
            )
        )
    return summaries


def _deliveries(r: RunResult) -> float:
    return r.deliveries_per_s


def saturation(
    server_cpu: float | None,
    broker_cpu: float | None,
    bench_cpu: float | None,
    pin: bool,
    broker: str = "Redis",
) -> str:
    """Which side was the limit: the server's core (with the broker on it, when pinned),
    the load generator's, both, or neither (the window's round trip through the sockets)."""
    if server_cpu is None or bench_cpu is None:
        return "-"
    sides = []
    if pin and broker_cpu is not None:
        sides.append((f"server core (server + {broker})", server_cpu + broker_cpu))
    else:
        sides.append(("server", server_cpu))
        if broker_cpu is not None:
            sides.append((broker, broker_cpu))
    sides.append(("load generator", bench_cpu))
    name, share = max(sides, key=lambda side: side[1])
    if share < SATURATED:
        return f"neither (at most {share * 100:.0f} %, {name})"
    full = [f"{side} {part * 100:.0f} %" for side, part in sides if part >= SATURATED]
    if len(full) > 1:
        return "both (" + ", ".join(full) + ")"
    return f"{name}, {share * 100:.0f} %"


def fmt_k(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f} k"


def fmt_num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def table(summaries: Sequence[Summary]) -> str:
    baseline = summaries[0].server if summaries else RAW_NEVER
    lines = [
        f"| server | receivers | deliveries/s | ratio to {baseline} | p50 ms | p99 ms "
        "| gaps / out of order | runs (min-max) | server CPU | server memory growth "
        "| load generator CPU | messages per read | saturated |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        cells = [
            s.server,
            s.room,
            fmt_k(s.deliveries_per_s),
            fmt_num(s.ratio, ".2f"),
            fmt_num(s.p50_ms, ".1f"),
            fmt_num(s.p99_ms, ".1f"),
            f"{s.gaps} / {s.out_of_order}",
            runs_cell(s, [(s.closed, "closed")]),
            fmt_pct(s.server_cpu),
            fmt_mib(s.server_rss_growth),
            fmt_pct(s.bench_cpu),
            fmt_num(s.messages_per_read, ".2f"),
            s.saturated,
        ]
        lines.append(table_row(cells))
    return "\n".join(lines)


def raw_table(summaries: Sequence[Summary]) -> str:
    """gobstopper's rows against each raw app of the run (empty without them)."""
    raws = [raw for raw in RAW_APPS if any(raw in s.vs_raw for s in summaries)]
    rows = [s for s in summaries if s.server.startswith("gobstopper") and s.vs_raw]
    if not raws or not rows:
        return ""
    lines = [
        "| server | receivers | "
        + " | ".join(f"ratio to {raw}" for raw in raws)
        + f" | p99 to {summaries[0].server}'s | saturated |",
        "|---|---:|" + "---:|" * len(raws) + "---:|---|",
    ]
    for s in rows:
        ratios = [fmt_num(s.vs_raw.get(raw), ".2f") for raw in raws]
        cells = [s.server, s.room, *ratios, fmt_num(s.p99_ratio, ".2f") + "x", s.saturated]
        lines.append(table_row(cells))
    return "\n".join(lines)


def runs_cell(s: Any, counts: Sequence[tuple[int, str]]) -> str:
    """A summary's runs column: the runs that worked of all of them, the slowest and
    fastest rate, then each ``(count, what)`` that is not zero."""
    runs = f"{s.runs - s.failed}/{s.runs}"
    if s.low is not None and s.high is not None:
        runs += f" ({fmt_k(s.low)}-{fmt_k(s.high)})"
    for count, what in counts:
        if count:
            runs += f", {count} {what}"
    return runs


def table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def round_trip_row(
    s: Any, leading: Sequence[str], rate: float | None, counts: Sequence[tuple[int, str]]
) -> str:
    """A row of a round-trip table (echo, calls): the ``leading`` cells, then the rate,
    the ratio, p50 and p99 latency, server and load generator CPU, and the runs."""
    cells = [
        *leading,
        fmt_k(rate),
        fmt_num(s.ratio, ".2f"),
        fmt_num(s.p50_ms, ".2f"),
        fmt_num(s.p99_ms, ".2f"),
        fmt_pct(s.server_cpu),
        fmt_pct(s.bench_cpu),
        runs_cell(s, counts),
    ]
    return table_row(cells)


def _others(results: Sequence[RunResult], args: argparse.Namespace) -> str:
    loads = [r.other_cpu for r in results if r.other_cpu is not None]
    if not loads:
        return "their load was not measured (no /proc/stat)."
    again = sum(r.attempts > 1 for r in results)
    text = (
        f"a run was measured again (at most {_plural(args.retries, 'time')}, the least "
        f"disturbed attempt kept) when the rest of the machine used more than "
        f"{args.max_other * 100:.0f} % of a core; {again} of {len(results)} "
        f"{'was' if again == 1 else 'were'}. "
        f"In the runs kept, the rest of the machine used {min(loads) * 100:.0f}-"
        f"{max(loads) * 100:.0f} % of a core."
    )
    return text


PEERS = ("Starlette uvicorn", "websockets")
#: Goals: gobstopper RSGI's deliveries/s at this share of never-awaited raw RSGI's or more,
#: and its p99 latency within this multiple of that app's.
GOAL_RATIO = 0.95
GOAL_P99 = 1.25


def fanout_goals(summaries: Sequence[Summary]) -> list[str]:
    """One line per room: gobstopper RSGI against never-awaited raw RSGI (goals: 0.95 or
    more of its deliveries/s, a p99 within 1.25x of its p99), against the other raw apps
    (for information), and against the peers (goal: ahead of each); and which side was
    saturated."""
    lines = []
    for room in dict.fromkeys(s.room for s in summaries):
        rows = {s.server: s for s in summaries if s.room == room}
        gob, ceiling = rows.get("gobstopper RSGI"), rows.get(RAW_NEVER)
        if gob is None or ceiling is None or gob.vs_raw.get(RAW_NEVER) is None:
            continue
        ratio = gob.vs_raw[RAW_NEVER]
        assert ratio is not None
        parts = [f"{ratio:.2f} of {RAW_NEVER} ({_met(ratio >= GOAL_RATIO)})"]
        p99 = gob.p99_ratio  # to the first server's: the ceiling's, when it ran
        if p99 is not None and summaries[0].server == RAW_NEVER:
            parts.append(f"p99 {p99:.2f}x its p99 ({_met(p99 <= GOAL_P99)})")
        for peer in PEERS:
            theirs = rows.get(peer)
            if theirs is not None and theirs.ratio and gob.ratio:
                ahead = gob.ratio / theirs.ratio
                parts.append(f"{ahead:.2f}x {peer} ({_met(ahead > 1)})")
        others = [
            f"{other:.2f} of {raw}"
            for raw, other in gob.vs_raw.items()
            if raw != RAW_NEVER and other is not None
        ]
        if others:
            parts.append(", ".join(others))
        parts.append(f"saturated: {gob.saturated} ({RAW_NEVER}: {ceiling.saturated})")
        lines.append(f"- {room} receivers: gobstopper RSGI at " + "; ".join(parts))
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _goal(summaries: Sequence[Summary], servers: Sequence[str]) -> str:
    """Goals: gobstopper RSGI near never-awaited raw RSGI, ahead of the peers."""
    if "gobstopper RSGI" not in servers or RAW_NEVER not in servers:
        return ""
    lines = fanout_goals(summaries)
    if not lines:
        return ""
    head = (
        f"Goals: gobstopper RSGI at {GOAL_RATIO:.2f} or more of the deliveries/s of "
        f"{RAW_NEVER} (the most RSGI code can do, unbounded), with a p99 latency within "
        f"{GOAL_P99:.2f}x of its p99, and ahead of Starlette on uvicorn and of "
        "`websockets`, at every room size. A ratio says little unless the side saturated "
        "is the server: with the load generator saturated, both servers were held back."
    )
    return head + "\n\n" + "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def source_revision() -> str:
    """The commit measured, and whether gobstopper's code differs from it."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", "gobstopper")
    except (OSError, subprocess.SubprocessError):
        return "an unknown revision"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def measured(command: str) -> str:
    """A report's first line: when, and with what command."""
    return (
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} with `{command}`, "
        "run from the repository's root."
    )


def machine(pin: bool) -> str:
    """The machine, and where the server and the load generator ran."""
    where = "server on core 1, load generator on core 0" if pin else "not pinned"
    return (
        f"{os.cpu_count()} cores ({cpu_model()}), {platform.system()} {platform.release()}; {where}"
    )


def spread(summaries: Sequence[Any], lead: str = "") -> str:
    """How far apart the fastest and slowest run of one row were, at most."""
    spreads = [s.high / s.low - 1 for s in summaries if s.low and s.high and s.runs > 1]
    if not spreads:
        return "one run per row gives no idea of the spread"
    worst = max(spreads) * 100
    return f"{lead}the fastest and slowest run of one row differed by up to {worst:.0f} %"


def log_problems(results: Sequence[Any]) -> list[str]:
    """The server log lines worth a look, each once, named by their server."""
    return sorted({f"{r.server}: {line.strip()}" for r in results for line in r.log_problems})


def closing_lines(errors: Sequence[str], problems: Sequence[str]) -> list[str]:
    """A report's last lines: the failed runs, then the server log lines worth a look
    (the first ten)."""
    lines = []
    if errors:
        lines.append("- Failed runs: " + "; ".join(errors))
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        lines.append("- Server log lines worth a look" + more + ":")
        lines += [f"  - `{line[:200]}`" for line in problems[:10]]
    else:
        lines.append("- Server logs: no warnings or errors.")
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(
    summaries: Sequence[Summary],
    results: Sequence[RunResult],
    args: argparse.Namespace,
    command: str,
    plot: str | None,
) -> str:
    problems = sorted({line for r in results for line in r.log_problems})
    errors = [
        f"{r.server}, {r.receivers} receivers, run {r.repeat}: `{r.error.splitlines()[0][:200]}`"
        for r in results
        if r.error is not None
    ]
    parts = [BEGIN, measured(command), "", table(summaries), ""]
    against_raw = raw_table(summaries)
    if against_raw:
        parts += ["gobstopper against each raw RSGI app, in the same runs:", "", against_raw, ""]
    goal = _goal(summaries, args.server_names)
    if goal:
        parts += [goal, ""]
    if plot is not None:
        parts += [f"![deliveries per second by server and room size]({plot})", ""]
    parts += [
        f"- Machine: {machine(args.pin)}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"picows {_version('picows')}, uvloop {_version('uvloop')}; gobstopper "
        f"{_version('gobstopper-rt')} at {source_revision()}.",
        f"- Settings: one granian worker, `--loop {event_loop_name()}`, `--no-access-log`; "
        f"{args.size}-byte text messages ({args.stalled_size} bytes in the rows with "
        f"stalled receivers), at most {args.window} in flight (the sender "
        f"sends message k once every receiver has message k-{args.window}); "
        f"{args.warmup:g} s of warm-up, then {args.duration:g} s measured; "
        f"{_plural(args.repeat, 'run')} per row, the servers taking turns, a fresh server "
        "for each run.",
        "- Deliveries/s, latency, CPU and messages per read are medians over the runs; "
        "the ratio is the median of the ratios within each repeat; gaps (messages a "
        "receiver never got) and out-of-order messages are totals over the runs.",
        "- Latency is the time from the send to the receipt, sampled on one delivery in "
        f"{SAMPLE_MASK + 1}. The sender keeps the window full, so at full speed it is "
        "mostly the window waiting its turn (about the window times the receivers, "
        "divided by the deliveries per second): compare it between servers, not with "
        "an idle server's latency.",
        '- CPU is the share of one core used while measuring. "Saturated" names the side '
        f"at {SATURATED * 100:.0f} % of its core or more: the server (it set the pace), the "
        "load generator (the figure is a floor for the server), both, or neither (the "
        "window's round trip through the sockets bound the rate). To spend less per message, the "
        "load generator has the kernel wake a receiver only once "
        f"{_plural(args.batch, 'message')} are waiting (`SO_RCVLOWAT`, lifted for the "
        "last messages); more messages per read than that mean it fell behind.",
        f"- Noise: a shared machine, one core for the server and one for the load "
        f"generator; {spread(summaries, lead='in this run ')}. Quote the ratios, measured "
        "side by side, rather than the absolute figures.",
        f"- Other processes: {_others(results, args)}",
    ]
    parts += closing_lines(errors, [line.strip() for line in problems])
    parts.append(END)
    return "\n".join(parts)


_TEMPLATE = """# Benchmarks

Figures from the scripts in `benchmarks/`, run on the machine each section names. They
compare servers measured side by side on one machine; the absolute numbers say little
about another machine.

## Fan-out: one sender, one room

`python -m benchmarks.fanout` measures broadcast to a room. One client sends 32-byte text
messages; the server broadcasts each one to every member of a room of 100 or 1,000
receivers; the table counts the messages the receivers get per second, summed over all
of them. The baselines are three raw RSGI apps without gobstopper
(`benchmarks/apps/raw_fanout.py`): *raw never-awaited* starts every member's send and
never awaits it (the most RSGI code can do, and unbounded: the ratio column's baseline);
*raw credit* starts a member's send at once while it has fewer than 64 unfinished ones,
else queues it in a bounded backlog drained by a task of that member's own; *raw
await-all* starts every send, then awaits them all. gobstopper's app
(`benchmarks/apps/gob_fanout.py`) joins a room with `app.manager` and calls
`broadcast()`, under granian RSGI and ASGI and under uvicorn. Every receiver checks that
its messages arrive complete and in order. The goals: gobstopper under RSGI delivers at
least 0.95 of never-awaited raw RSGI's messages per second with a p99 latency within
1.25x of its, and is ahead of Starlette on uvicorn and of `websockets`, at both room
sizes, while every per-connection queue stays bounded (by default 1 MiB and 1,024
messages per connection).

{begin}
{end}
"""


def save_json(path: Path | None, runs: Sequence[Any], summaries: Sequence[Any] = ()) -> None:
    """Write every run's figures (and the summaries) to ``path``, when one is given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"runs": [asdict(r) for r in runs], "summary": [asdict(s) for s in summaries]}
    path.write_text(json.dumps(data, indent=2))


def replace_section(out: Path, begin: str, end: str, section: str, fallback: str) -> None:
    """Put ``section`` between ``begin`` and ``end`` in ``out``; without the markers,
    append ``fallback`` (the section with its heading). Other sections are kept."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + fallback + "\n"
    out.write_text(text)


def write_report(out: Path, section: str) -> None:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_TEMPLATE.format(begin=BEGIN, end=END))
    replace_section(out, BEGIN, END, section, "## Fan-out: one sender, one room\n\n" + section)


def write_plot(path: Path, summaries: Sequence[Summary], servers: Sequence[str]) -> bool:
    """A grouped bar plot of deliveries/s; False (and a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return False
    rooms = list(dict.fromkeys(s.room for s in summaries))
    width = 0.8 / max(1, len(servers))
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for i, name in enumerate(servers):
        rows = {s.room: s for s in summaries if s.server == name}
        xs, ys, err_low, err_high = [], [], [], []
        for j, room in enumerate(rooms):
            s = rows.get(room)
            if s is None or s.deliveries_per_s is None:
                continue
            assert s.low is not None and s.high is not None
            xs.append(j + (i - (len(servers) - 1) / 2) * width)
            ys.append(s.deliveries_per_s / 1000)
            err_low.append((s.deliveries_per_s - s.low) / 1000)
            err_high.append((s.high - s.deliveries_per_s) / 1000)
        ax.bar(xs, ys, width, label=name, yerr=[err_low, err_high], capsize=3)
    ax.set_xticks(range(len(rooms)), [f"{r} receivers".replace(", ", "\n") for r in rooms])
    ax.set_ylabel("deliveries/s (thousands)")
    ax.set_title("Fan-out to one room (medians; error bars: slowest and fastest run)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
