"""Command-line pieces the benchmark scripts share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

__all__ = ["add_retry_options", "check_retry_options", "in_turns", "positive_ints", "server_keys"]

C = TypeVar("C")
R = TypeVar("R")


def in_turns(
    repeats: int, cases: Sequence[C], run: Callable[[C, int], R], progress: Callable[[R], str]
) -> list[R]:
    """Run every case once per repeat (``run(case, repeat)``, repeats from 1), the cases
    taking turns so that a disturbance spreads over all of them; print each result."""
    results: list[R] = []
    for repeat in range(1, repeats + 1):
        for case in cases:
            result = run(case, repeat)
            results.append(result)
            print(progress(result), flush=True)
    return results


def positive_ints(
    p: argparse.ArgumentParser, option: str, text: str, allow_empty: bool = False
) -> list[int]:
    """``text`` (``option``'s value) as a comma-separated list of positive integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        p.error(f"{option}={text!r} is not a comma-separated list of integers")
    if (not values and not allow_empty) or min(values, default=1) < 1:
        p.error(f"{option} needs positive integers")
    return values


def server_keys(p: argparse.ArgumentParser, text: str, servers: Mapping[str, object]) -> list[str]:
    """The keys of ``servers`` that ``--servers`` (``text``) names, in their order."""
    keys = [k for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in servers]
    if unknown or not keys:
        p.error(f"unknown server(s) {unknown}; choose from {', '.join(servers)}")
    return [k for k in servers if k in keys]


def add_retry_options(p: argparse.ArgumentParser) -> None:
    """``--max-other`` and ``--retries``: measure a run again while the machine is busy."""
    p.add_argument(
        "--max-other",
        type=float,
        default=0.25,
        help="share of a core other processes may use before a run is repeated (0.25)",
    )
    p.add_argument("--retries", type=int, default=1, help="repeats of a disturbed run (1)")


def check_retry_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.retries < 0 or args.max_other < 0:
        p.error("--retries and --max-other must not be negative")
