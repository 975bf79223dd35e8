"""Channel history: the message layer's channel fan-out with history kept, and without.

The channel workload of ``benchmarks.rpc`` (one publisher keeping 128 ``publish(data)``
requests in flight, 100 or 1,000 subscribers, half to ``news.sport`` and half to
``news.*``, every delivery checked for order and count) against four servers, all
``benchmarks/apps/gob_rpc.py`` under granian RSGI with one worker:

1. the memory broker, no history (the baseline of the memory ratio);
2. the memory broker, ``rpc.keep_history("news.sport", ...)``: the in-memory store;
3. the Redis broker, no history (the baseline of the Redis ratio);
4. the Redis broker with history: one Lua script appends to a Redis stream and
   publishes, and the worker delivers each publication as it comes back from Redis.

With history every notification carries ``offset`` and ``epoch``; the load generator
also checks that each offset follows its sequence number (``wrong offsets``). Each run
of a Redis server gets a fresh redis-server on a free port (pinned with the server to
core 1 when it can); the Redis CPU is measured apart from the server's.

    python -m benchmarks.history            # full run, writes docs/benchmarks.md
    python -m benchmarks.history --quick    # shorter, one repeat

Results go between the ``<!-- history:begin -->`` and ``<!-- history:end -->`` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from .cli import add_retry_options, check_retry_options, in_turns, positive_ints, server_keys
from .loadgen import RING, RunResult, Settings
from .report import (
    SATURATED,
    _median,
    _others,
    _plural,
    _version,
    closing_lines,
    fmt_k,
    fmt_num,
    fmt_pct,
    log_problems,
    machine,
    measured,
    rate_figures,
    replace_section,
    runs_cell,
    saturation,
    save_json,
    source_revision,
    spread,
    table_row,
)
from .rpc import channel_progress
from .rpc_loadgen import CHANNEL, PATTERN, measure_channel
from .servers import (
    ROOT,
    RedisProcess,
    ServerProcess,
    ServerSpec,
    _granian,
    event_loop_name,
    least_disturbed,
    measure_on,
    pinning_available,
)

__all__ = ["BEGIN", "END", "GOALS", "SETUPS", "HistorySummary", "history_goals", "main"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- history:begin -->"
END = "<!-- history:end -->"
APP = "benchmarks.apps.gob_rpc:app"


@dataclass(frozen=True)
class Setup:
    """A server to measure: its name in the tables, its broker, whether it keeps history."""

    name: str
    redis: bool
    history: bool


#: key -> setup, in the order each repeat measures them (each baseline before its pair).
SETUPS: dict[str, Setup] = {
    "memory-off": Setup("memory, no history", redis=False, history=False),
    "memory-on": Setup("memory, history", redis=False, history=True),
    "redis-off": Setup("Redis, no history", redis=True, history=False),
    "redis-on": Setup("Redis, history", redis=True, history=True),
}
#: (history on, its baseline, the goal for their ratio, what the line calls it)
GOALS = (
    ("memory, history", "memory, no history", 0.9, "memory store"),
    ("Redis, history", "Redis, no history", 0.7, "Redis store"),
)


def server_spec(setup: Setup, redis_url: str | None, args: argparse.Namespace) -> ServerSpec:
    """The granian command and environment of ``setup``."""
    env = {
        "GOBSTOPPER_BROKER_URL": redis_url if setup.redis and redis_url else "memory://",
        "BENCH_HISTORY_SIZE": str(args.history_size if setup.history else 0),
        "BENCH_HISTORY_TTL": f"{args.history_ttl:g}",
    }
    return ServerSpec(setup.name, _granian(APP, "rsgi"), env)


@dataclass
class HistoryRun(RunResult):
    """A run, with the share of a core its redis-server used while measuring."""

    redis_cpu: float | None = None


class _WithRedis:
    """The server as the load generator measures it, with its redis-server: CPU time
    is the two processes' (Redis is not the machine's other load), and each reading of
    Redis's part is kept, to tell it apart afterwards."""

    def __init__(self, server: ServerProcess, redis: RedisProcess) -> None:
        self.server = server
        self.redis = redis
        self.port = server.port
        self.readings: list[tuple[float, float]] = []  # (wall clock, Redis CPU seconds)

    def cpu_seconds(self) -> float:
        redis = self.redis.cpu_seconds()
        self.readings.append((time.perf_counter(), redis))
        return self.server.cpu_seconds() + redis

    def rss_bytes(self) -> int:
        return self.server.rss_bytes()

    def redis_share(self) -> float | None:
        """Redis's share of a core between the first two readings (the measured time)."""
        if len(self.readings) < 2:
            return None
        (wall0, cpu0), (wall1, cpu1) = self.readings[:2]
        return (cpu1 - cpu0) / max(1e-9, wall1 - wall0)


def run_setup(
    setup: Setup, receivers: int, repeat: int, settings: Settings, args: argparse.Namespace
) -> HistoryRun:
    """One run on a fresh server (and a fresh redis-server); measured again while other
    processes were busy (as ``benchmarks.rpc``)."""

    def attempt() -> HistoryRun:
        redis = RedisProcess.start(settings.pin) if setup.redis else None
        watched: list[_WithRedis] = []

        def measure(server: ServerProcess) -> Coroutine[Any, Any, RunResult]:
            target = server
            if redis is not None:
                watched.append(_WithRedis(server, redis))
                target = cast(ServerProcess, watched[-1])  # it has what the run reads
            return measure_channel(server.port, receivers, settings, target, setup.history)

        try:
            result, problems = measure_on(
                server_spec(setup, redis.url if redis else None, args),
                settings.pin,
                measure,
                lambda error: RunResult(setup.name, receivers, repeat, error=error),
            )
        finally:
            if redis is not None:
                redis.stop()
        run = HistoryRun(**asdict(result))
        run.server, run.repeat, run.log_problems = setup.name, repeat, problems
        if watched and run.error is None and run.server_cpu is not None:
            run.redis_cpu = watched[0].redis_share()
            run.server_cpu -= run.redis_cpu or 0.0
        return run

    return least_disturbed(
        attempt, args.retries, args.max_other, _progress, "others were busy: again"
    )


def _progress(r: HistoryRun) -> str:
    extra = f"wrong offsets {r.wrong_offsets}, Redis CPU {fmt_pct(r.redis_cpu)}, "
    return channel_progress(r, extra)


# -- summaries ----------------------------------------------------------------------------


@dataclass
class HistorySummary:
    server: str
    receivers: int
    runs: int
    failed: int
    deliveries_per_s: float | None
    low: float | None
    high: float | None
    ratio: float | None  # to the same broker without history, paired within each repeat
    p50_ms: float | None
    p99_ms: float | None
    gaps: int
    out_of_order: int
    wrong_offsets: int
    closed: int
    server_cpu: float | None
    redis_cpu: float | None
    bench_cpu: float | None
    saturated: str  # which side used its whole core: the limit of the rate


def baseline_of(name: str) -> str:
    """The setup a setup's ratio is taken to: the same broker without history."""
    return next((base for on, base, _, _ in GOALS if on == name), name)


def summarise_history(
    results: Sequence[HistoryRun], names: Sequence[str], pin: bool
) -> list[HistorySummary]:
    """One row per room and setup, in the order of ``names``."""
    summaries = []
    for receivers in sorted({r.receivers for r in results}):
        same = [r for r in results if r.receivers == receivers]
        for name in names:
            runs = [r for r in same if r.server == name]
            if not runs:
                continue
            base = [r for r in same if r.server == baseline_of(name)]
            ok = [r for r in runs if r.error is None]
            figures = rate_figures(runs, base, lambda r: r.deliveries_per_s)
            redis_cpu = _median([r.redis_cpu for r in ok])
            summaries.append(
                HistorySummary(
                    server=name,
                    receivers=receivers,
                    deliveries_per_s=_median([r.deliveries_per_s for r in ok]),
                    gaps=sum(r.gaps for r in ok),
                    out_of_order=sum(r.out_of_order for r in ok),
                    wrong_offsets=sum(r.wrong_offsets for r in ok),
                    redis_cpu=redis_cpu,
                    saturated=saturation(
                        figures["server_cpu"], redis_cpu, figures["bench_cpu"], pin
                    ),
                    **figures,
                )
            )
    return summaries


def history_goals(summaries: Sequence[HistorySummary]) -> list[str]:
    """One line per store and room: history on over history off, against its goal, with
    the side that was saturated in each."""
    lines = []
    for on, off, goal, label in GOALS:
        for s in summaries:
            if s.server != on:
                continue
            base = next(
                (b for b in summaries if b.server == off and b.receivers == s.receivers), None
            )
            if s.ratio is None or base is None:
                continue
            verdict = "met" if s.ratio >= goal else "not met"
            lines.append(
                f"- {label}, {s.receivers:,} subscribers: history on at {s.ratio:.2f} of "
                f"history off (goal {goal:.1f} or more: {verdict}); saturated: "
                f"{s.saturated} with history, {base.saturated} without"
            )
    return lines


def history_table(summaries: Sequence[HistorySummary]) -> str:
    lines = [
        "| server | subscribers | deliveries/s | ratio to no history | p50 ms | p99 ms "
        "| gaps / out of order / wrong offsets | runs (min-max) | server CPU | Redis CPU "
        "| load generator CPU | saturated |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for s in summaries:
        cells = [
            s.server,
            str(s.receivers),
            fmt_k(s.deliveries_per_s),
            fmt_num(s.ratio, ".2f"),
            fmt_num(s.p50_ms, ".1f"),
            fmt_num(s.p99_ms, ".1f"),
            f"{s.gaps} / {s.out_of_order} / {s.wrong_offsets}",
            runs_cell(s, [(s.closed, "closed")]),
            fmt_pct(s.server_cpu),
            fmt_pct(s.redis_cpu),
            fmt_pct(s.bench_cpu),
            s.saturated,
        ]
        lines.append(table_row(cells))
    return "\n".join(lines)


def history_report(
    results: Sequence[HistoryRun],
    summaries: Sequence[HistorySummary],
    args: argparse.Namespace,
    command: str,
) -> str:
    errors = [
        f"{r.server}, {r.receivers} subscribers, run {r.repeat}: "
        f"`{(r.error or '').splitlines()[0][:200]}`"
        for r in results
        if r.error
    ]
    redis = any(SETUPS[k].redis for k in args.server_keys)
    where = (
        "server and Redis on core 1, load generator on core 0"
        if args.pin and redis
        else machine(args.pin).split("; ", 1)[1]
    )
    parts = [BEGIN, measured(command), "", history_table(summaries), ""]
    goals = history_goals(summaries)
    if goals:
        parts += [
            "History on against history off, side by side (goals: the memory store at 0.9 "
            "or more, the Redis store at 0.7 or more):",
            "",
            *goals,
            "",
        ]
    parts += [
        f"- Machine: {machine(args.pin).split('; ', 1)[0]}; {where}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"picows {_version('picows')}, redis-py {_version('redis')}, redis-server "
        f"{RedisProcess.version() if redis else '-'}; gobstopper {_version('gobstopper-rt')} "
        f"at {source_revision()}.",
        f"- Servers: `{APP}` under granian RSGI, one worker, `--loop {event_loop_name()}`, "
        "`--no-access-log`; `GOBSTOPPER_BROKER_URL` `memory://` or a redis-server of its "
        "own (no persistence); with history, `rpc.keep_history"
        f'("{CHANNEL}", size={args.history_size}, ttl={args.history_ttl:g})`. A fresh '
        "server (and Redis) for each run.",
        f"- Load: subscribers alternate between `{CHANNEL}` and `{PATTERN}`; 32 bytes of "
        f"data per publication, at most {args.window} publications in flight; "
        f"{args.warmup:g} s of warm-up, then {args.duration:g} s measured; "
        f"{_plural(args.repeat, 'run')} per row, the four servers taking turns within "
        "each repeat. Rates, latency and CPU are medians over the runs; the ratio is the "
        "median of the ratios within each repeat; gaps, out-of-order deliveries and wrong "
        "offsets (an offset that does not follow the sequence number) are totals.",
        "- CPU: the share of one core used while measuring. With Redis on the server's "
        "core, the two together are that core's load. *Saturated* names the side at "
        f"{SATURATED * 100:.0f} % of its core or more (the limit of the rate); neither "
        "means the rate was bound by the window's round trip through the sockets.",
        f"- Noise: a shared machine; {spread(summaries)}. Other processes: "
        f"{_others(results, args)} Quote the ratios, measured side by side, rather than "
        "the absolute figures.",
    ]
    parts += closing_lines(errors, log_problems(results))
    parts.append(END)
    return "\n".join(parts)


_INTRO = """## Channel history: what keeping it costs

`python -m benchmarks.history` runs the message layer's channel workload (one publisher
keeping 128 `publish(data)` requests in flight; 100 or 1,000 subscribers, half to
`news.sport`, half to `news.*`) against `benchmarks/apps/gob_rpc.py` under granian RSGI,
one worker, four ways: the memory broker without history (the baseline of the memory
ratio) and with `rpc.keep_history("news.sport", ...)` (the in-memory store); the Redis
broker without history (the baseline of the Redis ratio) and with it (one Lua script
appends each publication to a Redis stream and publishes it; the worker delivers it as
it comes back). See [History](history.md). Goals: with history, at least 0.9 of the
deliveries per second without on the memory broker, 0.7 on the Redis broker. The load
generator checks every delivery's order and count and, with history, that each push's
`offset` follows its sequence number; it subscribes 50 subscribers at a time.
"""


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, one run per row")
    p.add_argument("--rooms", default="100,1000", help="subscribers per channel, comma-separated")
    p.add_argument("--servers", default=",".join(SETUPS), help="of: " + ",".join(SETUPS))
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 1)")
    p.add_argument("--repeat", type=int, help="runs per configuration (default 3)")
    p.add_argument("--window", type=int, default=Settings.window, help="publications in flight")
    p.add_argument("--history-size", type=int, default=1000, help="publications kept (1000)")
    p.add_argument("--history-ttl", type=float, default=600.0, help="seconds kept (600)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    add_retry_options(p)
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.room_sizes = positive_ints(p, "--rooms", args.rooms)
    args.server_keys = server_keys(p, args.servers, SETUPS)
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        p.error("--duration and --repeat must be positive, --warmup not negative")
    if args.history_size < 1 or args.history_ttl <= 0:
        p.error("--history-size and --history-ttl must be positive")
    if not 1 <= args.window <= RING // 4:
        p.error(f"--window must be from 1 to {RING // 4}")
    check_retry_options(p, args)
    if any(SETUPS[k].redis for k in args.server_keys) and shutil.which("redis-server") is None:
        p.error("redis-server is not installed (apt-get install redis-server)")
    args.pin = not args.no_pin and pinning_available()
    args.settings = Settings(args.window, args.warmup, args.duration, 4, args.pin)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.history", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    started = time.monotonic()
    # Each pair measured one after the other: a slow spell of a shared machine hits
    # both sides of a ratio alike.
    results = in_turns(
        args.repeat,
        [(receivers, key) for receivers in args.room_sizes for key in args.server_keys],
        lambda case, repeat: run_setup(SETUPS[case[1]], case[0], repeat, args.settings, args),
        _progress,
    )
    names = [SETUPS[k].name for k in args.server_keys]
    summaries = summarise_history(results, names, args.pin)
    section = history_report(results, summaries, args, command)
    replace_section(args.out, BEGIN, END, section, _INTRO + "\n" + section)
    save_json(args.json, results, summaries)
    print()
    print(section)
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
