"""Every benchmark in one run: echo, fan-out, connections, the reconnect storm, the
message layer, and (with redis-server installed) cluster fan-out, channel routing
across nodes, channel history and what one broker carries (NATS too where nats-server
is installed); then the goals, side by side.

    python -m benchmarks            # full run (about 26 minutes on 2 cores)
    python -m benchmarks --quick    # shorter runs, one repeat (a few minutes)

Each benchmark writes its own section of ``docs/benchmarks.md`` (``--out``); this then
writes the goals section between ``<!-- goals:begin -->`` and ``<!-- goals:end -->``.
Every server is a process of its own, on 127.0.0.1, stopped when its runs end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import broker_rate, cluster, conns, echo, fanout, history, routing, rpc, storm
from .conns import ConnSummary, memory_goal
from .echo_report import EchoSummary, goal_verdicts
from .history import HistorySummary, history_goals
from .report import Summary, fanout_goals, replace_section
from .servers import ROOT

__all__ = ["goals_section", "main"]

BEGIN = "<!-- goals:begin -->"
END = "<!-- goals:end -->"


def _summaries(path: Path, cls: Any) -> list[Any]:
    if not path.exists():
        return []
    return [cls(**row) for row in json.loads(path.read_text())["summary"]]


def goals_section(
    echo_rows: Sequence[EchoSummary],
    fanout_rows: Sequence[Summary],
    conn_rows: Sequence[ConnSummary],
    command: str,
    history_rows: Sequence[HistorySummary] = (),
) -> str:
    """The goals of the benchmark suite, each with its measured verdict."""
    lines = [
        BEGIN,
        f"From `{command}`; the tables below hold the figures.",
        "",
        "Echo (gobstopper RSGI at 95 % or more of raw RSGI; gobstopper on its best server "
        "within 10 % of the best peer):",
        "",
        *[f"- {v}" for v in goal_verdicts(echo_rows)],
        "",
        "Fan-out (gobstopper RSGI at 0.95 or more of raw RSGI whose sends are never "
        "awaited, p99 within 1.25 times its p99; ahead of Starlette on uvicorn and of "
        "`websockets` at every room size):",
        "",
        *fanout_goals(fanout_rows),
        "",
        "Memory (gobstopper on its best server within 10 % of the best peer):",
        "",
        f"- {memory_goal(conn_rows) or 'not measured'}",
        "",
        "Channel history (with history, at 0.9 or more of the same channels without on the "
        "memory broker, 0.7 or more on the Redis broker):",
        "",
        *(history_goals(history_rows) or ["- not measured (needs redis-server)"]),
        END,
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="shorter runs, one repeat")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--json-dir", type=Path, help="keep every run's figures here")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks", *given])
    common = ["--out", str(args.out)] + (["--quick"] if args.quick else [])
    common += ["--no-pin"] if args.no_pin else []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        folder = args.json_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        codes = []
        modules = [
            ("echo", echo),
            ("fanout", fanout),
            ("conns", conns),
            ("storm", storm),
            ("rpc", rpc),
        ]
        if shutil.which("redis-server") is not None:
            modules += [("cluster", cluster), ("routing", routing), ("history", history)]
            modules += [("broker_rate", broker_rate)]
        else:
            print(
                "redis-server is not installed: no cluster fan-out, no routing, no history",
                flush=True,
            )
        # Each script pins this process to core 0 while it measures: give every one the
        # cores this run started with, or only the first would find two cores to pin to.
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        for name, module in modules:
            print(f"== {name} ==", flush=True)
            if cores is not None:
                os.sched_setaffinity(0, cores)
            codes.append(module.main([*common, "--json", str(folder / f"{name}.json")]))
        section = goals_section(
            _summaries(folder / "echo.json", EchoSummary),
            _summaries(folder / "fanout.json", Summary),
            _summaries(folder / "conns.json", ConnSummary),
            command,
            _summaries(folder / "history.json", HistorySummary),
        )
    replace_section(args.out, BEGIN, END, section, "## Goals\n\n" + section)
    print()
    print(section)
    print(f"\nall benchmarks done in {time.monotonic() - started:.0f} s")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
