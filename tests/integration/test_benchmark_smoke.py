"""The fan-out benchmark runs end to end: tiny room, one short run per server.

It checks that the benchmark works, not how fast anything is. The load generator needs
picows (the ``bench`` extra): without it the test is skipped, except in CI, where a
missing load generator must fail rather than pass unseen.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .servers import ROOT

HAVE_PICOWS = importlib.util.find_spec("picows") is not None
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_picows() -> None:
    if not HAVE_PICOWS:
        if IN_CI:
            pytest.fail("picows is not installed: the benchmark smoke test cannot run in CI")
        pytest.skip("picows is not installed (pip install 'gobstopper[bench]')")


def run_benchmark(
    module: str, args: list[str], tmp_path: Path, timeout: float
) -> tuple[Path, list[dict[str, Any]]]:
    """Run a benchmark script into ``tmp_path``; return its report path and its runs."""
    out = tmp_path / "benchmarks.md"
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out), "--json", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads(results.read_text())["runs"]


@pytest.mark.timeout(90)
def test_fanout_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    out, runs = run_benchmark(
        "benchmarks.fanout",
        ["--rooms", "10", "--duration", "1", "--warmup", "0.3", "--repeat", "1", "--retries", "0"],
        tmp_path,
        timeout=80,
    )
    assert {r["server"] for r in runs} == {"raw RSGI", "gobstopper RSGI", "gobstopper ASGI"}
    for run in runs:
        assert run["error"] is None, run
        assert run["receivers"] == 10
        assert run["deliveries_per_s"] > 0, run
        assert run["gaps"] == 0, run
        assert run["out_of_order"] == 0, run
        assert run["closed"] == 0, run
        assert run["p50_ms"] is not None, run

    report = out.read_text()
    assert "<!-- fanout:begin -->" in report
    assert "<!-- fanout:end -->" in report
    assert "| gobstopper RSGI | 10 |" in report
    # The plot goes next to the report, when matplotlib can draw it.
    assert (tmp_path / "benchmarks-fanout.png").exists() == HAVE_MATPLOTLIB


def test_report_replaces_only_its_section(tmp_path: Path) -> None:
    require_picows()
    from benchmarks.report import BEGIN, END, write_report

    out = tmp_path / "benchmarks.md"
    out.write_text(f"# Benchmarks\n\nintro\n\n{BEGIN}\nold figures\n{END}\n\n## Other\n\nkept\n")
    write_report(out, f"{BEGIN}\nnew figures\n{END}")
    text = out.read_text()
    assert "old figures" not in text
    assert text.count("new figures") == 1
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert text.endswith("## Other\n\nkept\n")

    fresh = tmp_path / "new" / "benchmarks.md"
    write_report(fresh, f"{BEGIN}\nfigures\n{END}")
    assert "## Fan-out" in fresh.read_text()
    assert fresh.read_text().count(BEGIN) == 1


@pytest.mark.timeout(30)
def test_echo_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    out, runs = run_benchmark(
        "benchmarks.echo",
        [
            "--servers",
            "raw,gob-rsgi",
            "--conns",
            "1",
            "--sizes",
            "32",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--repeat",
            "1",
        ],
        tmp_path,
        timeout=25,
    )
    assert [r["server"] for r in runs] == ["raw RSGI", "gobstopper RSGI"]
    for run in runs:
        assert run["error"] is None, run
        assert (run["connections"], run["size"]) == (1, 32)
        assert run["messages_per_s"] > 0, run
        assert run["lost"] == 0, run
        assert run["wrong_size"] == 0, run
        assert run["closed"] == 0, run
        assert run["p50_ms"] is not None, run
        assert run["log_problems"] == [], run

    report = out.read_text()
    assert report.count("<!-- echo:begin -->") == 1
    assert report.count("<!-- echo:end -->") == 1
    assert "| gobstopper RSGI | 1 | 32 B |" in report
    assert "gobstopper RSGI at 95% or more of raw RSGI on echo" in report
