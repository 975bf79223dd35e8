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
        pytest.skip("picows is not installed (pip install -e '.[bench]')")


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


ALL_SERVERS = {
    "raw RSGI",
    "gobstopper RSGI",
    "gobstopper ASGI",
    "gobstopper uvicorn",
    "Starlette uvicorn",
    "websockets",
}
#: The fan-out benchmark's: the raw app has two more variants there.
FANOUT_SERVERS = (ALL_SERVERS - {"raw RSGI"}) | {
    "raw never-awaited",
    "raw credit",
    "raw await-all",
}
#: Servers whose broadcast never waits on a stalled receiver.
NEVER_HELD_UP = ("gobstopper", "raw never-awaited", "raw credit")


@pytest.mark.timeout(120)
def test_fanout_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    out, runs = run_benchmark(
        "benchmarks.fanout",
        [
            *("--rooms", "10", "--stalled", "0,10", "--duration", "0.5", "--warmup", "0.2"),
            *("--repeat", "1", "--retries", "0"),
        ],
        tmp_path,
        timeout=110,
    )
    # Every server, with and without a stalled receiver (1 of 10, with larger messages).
    assert {(r["server"], r["stalled"], r["size"]) for r in runs} == {
        (server, stalled, size)
        for server in FANOUT_SERVERS
        for stalled, size in ((0, 32), (1, 1024))
    }
    for run in runs:
        assert run["error"] is None, run
        assert run["receivers"] == 10
        assert run["out_of_order"] == 0, run
        assert run["closed"] == 0, run
        assert run["server_rss_growth"] is not None, run
        # A server whose broadcast waits on a stalled receiver may deliver nothing more
        # (that is what the stalled rows show); gobstopper's and two raw apps' go on.
        if run["stalled"] == 0 or run["server"].startswith(NEVER_HELD_UP):
            assert run["deliveries_per_s"] > 0, run
            assert run["p50_ms"] is not None, run
            assert run["gaps"] == 0, run

    report = out.read_text()
    assert "<!-- fanout:begin -->" in report
    assert "<!-- fanout:end -->" in report
    assert "| gobstopper RSGI | 10 |" in report
    assert "| ratio to raw never-awaited |" in report
    assert "| saturated |" in report
    assert "| ratio to raw credit | ratio to raw await-all |" in report  # gobstopper's rows
    assert "of raw never-awaited (" in report  # the goals, room by room
    assert "| websockets | 10, 1 stalled, 1 KiB |" in report
    assert "ahead of Starlette on uvicorn and of `websockets`" in report
    # The plot goes next to the report, when matplotlib can draw it.
    assert (tmp_path / "benchmarks-fanout.png").exists() == HAVE_MATPLOTLIB


@pytest.mark.timeout(90)
def test_connection_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    out, runs = run_benchmark(
        "benchmarks.conns",
        ["--connections", "50", "--duration", "0.3", "--loops", "2", "--repeat", "1"],
        tmp_path,
        timeout=80,
    )
    assert {r["server"] for r in runs} == ALL_SERVERS
    for run in runs:
        assert run["error"] is None, run
        assert run["connections"] == 50, run
        assert run["rss_growth"] is not None and run["rss_per_connection"] is not None, run
        assert run["churn_per_s"] > 0, run
        assert run["failed"] == 0, run
        assert run["log_problems"] == [], run

    report = out.read_text()
    assert report.count("<!-- conns:begin -->") == 1
    assert "| gobstopper RSGI | 50 |" in report
    assert "memory per idle connection: best gobstopper" in report

    from benchmarks.__main__ import goals_section
    from benchmarks.conns import ConnSummary

    summary = json.loads((tmp_path / "results.json").read_text())["summary"]
    section = goals_section([], [], [ConnSummary(**row) for row in summary], "cmd")
    assert section.startswith("<!-- goals:begin -->")
    assert "memory per idle connection: best gobstopper" in section


def test_storm_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    out, runs = run_benchmark(
        "benchmarks.storm",
        ["--clients", "20", "--timeout", "20", "--repeat", "1"],
        tmp_path,
        timeout=80,
    )
    assert {r["server"] for r in runs} == {
        "gobstopper RSGI",
        "gobstopper uvicorn",
        "Starlette uvicorn",
    }
    for run in runs:
        assert run["error"] is None, run
        assert run["clients"] == 20, run
        assert run["recovery_s"] > 0 and run["peak_rss"] > 0, run
        assert run["attempts"] >= 20, run
    assert out.read_text().count("<!-- storm:begin -->") == 1
    assert "| gobstopper RSGI | 20 |" in out.read_text()


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


@pytest.mark.timeout(90)
def test_cluster_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    from .nats_server import require_nats
    from .redis_server import require_redis

    require_redis()
    require_nats()
    out, runs = run_benchmark(
        "benchmarks.cluster",
        ["--rooms", "20", "--duration", "0.5", "--warmup", "0.2", "--repeat", "1"],
        tmp_path,
        timeout=80,
    )
    assert [r["server"] for r in runs] == [
        "1 worker, memory",
        "1 worker, Redis",
        "2 workers, Redis",
        "2 workers, Redis Cluster",
        "2 workers, NATS",
    ]
    for run in runs:
        assert run["error"] is None, run
        assert run["deliveries_per_s"] > 0, run
        # Every receiver got every message, in order, wherever it was connected.
        assert run["gaps"] == 0 and run["out_of_order"] == 0, run
        assert run["log_problems"] == [], run
        # The broker's CPU is measured apart from the server's, only where one runs.
        assert (run["broker_cpu"] is not None) == (run["server"] != "1 worker, memory"), run
    report = out.read_text()
    assert report.count("<!-- cluster:begin -->") == 1
    assert "| 2 workers, Redis | 20 |" in report
    assert "| 2 workers, NATS | 20 |" in report
    assert "- 2 workers, Redis Cluster, 20 receivers: " in report


@pytest.mark.timeout(90)
def test_broker_rate_benchmark_runs(tmp_path: Path) -> None:
    from .nats_server import require_nats
    from .redis_server import require_redis

    require_redis()
    require_nats()
    out, runs = run_benchmark("benchmarks.broker_rate", ["--duration", "0.3"], tmp_path, 80)
    assert [(r["broker"], r["kind"]) for r in runs] == [
        (broker, kind)
        for broker in ("Redis", "Redis Cluster", "NATS")
        for kind in ("plain", "history")
    ]
    for run in runs:
        assert run["messages"] > 0 and run["per_second"] > 0, run
    report = out.read_text()
    assert report.count("<!-- broker-rate:begin -->") == 1
    assert "| NATS | history |" in report


@pytest.mark.timeout(90)
def test_routing_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    from .nats_server import require_nats
    from .redis_server import require_redis

    require_redis()
    require_nats()
    out, runs = run_benchmark(
        "benchmarks.routing",
        [
            *("--rooms", "10", "--nodes", "2", "--others", "2", "--duration", "0.5"),
            *("--warmup", "0.2", "--repeat", "1", "--retries", "0"),
        ],
        tmp_path,
        timeout=80,
    )
    assert [r["server"] for r in runs] == ["Redis", "Redis Cluster", "NATS"]
    for run in runs:
        assert run["error"] is None, run
        assert run["nodes"] == 2 and run["receivers"] == 10, run
        assert run["deliveries_per_s"] > 0, run
        # Every subscriber of the channel got every publication, in order; the
        # subscribers of the other channel got none of them.
        assert run["gaps"] == 0 and run["out_of_order"] == 0 and run["stray"] == 0, run
        assert run["log_problems"] == [], run
        matching, unmatched = run["per_publication"]
        assert matching > 0.9, run
        if run["server"] == "NATS":
            # NATS routes by subject: the node without a subscriber gets nothing, by its
            # own count and by the NATS server's.
            assert unmatched < 0.01, run
            assert run["nats_per_publication"][1] < 0.01, run
        else:
            # Redis sends every channel publication to every node with a subscriber.
            assert unmatched > 0.9, run
            assert run["nats_per_publication"] == [], run
    report = out.read_text()
    assert report.count("<!-- routing:begin -->") == 1
    assert "| NATS | 10 |" in report
    assert "- Redis Cluster, 10 subscribers: " in report


@pytest.mark.timeout(45)
def test_rpc_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    out, runs = run_benchmark(
        "benchmarks.rpc",
        [
            *("--conns", "1", "--rooms", "10", "--duration", "0.5", "--warmup", "0.2"),
            *("--fanout-warmup", "0.2", "--repeat", "1", "--retries", "0"),
        ],
        tmp_path,
        timeout=40,
    )
    servers = ("raw RSGI", "gobstopper WebSocket", "gobstopper messages")
    calls = [r for r in runs if "encoding" in r]
    channels = [r for r in runs if "receivers" in r]
    # Calls: every server, in both encodings; every answer came back right.
    assert {(r["server"], r["encoding"]) for r in calls} == {
        (server, encoding) for server in servers for encoding in ("json", "msgpack")
    }
    for run in calls:
        assert run["error"] is None, run
        assert run["connections"] == 1, run
        assert run["calls_per_s"] > 0, run
        assert run["p50_ms"] is not None, run
        assert run["lost"] == 0 and run["wrong"] == 0 and run["closed"] == 0, run
        assert run["log_problems"] == [], run
    # Channels: the message layer's publish and the WebSocket layer's broadcast reached
    # every subscriber (exact and by pattern), complete and in order.
    assert [r["server"] for r in channels] == list(servers[1:])
    for run in channels:
        assert run["error"] is None, run
        assert run["receivers"] == 10, run
        assert run["deliveries_per_s"] > 0, run
        assert run["p50_ms"] is not None, run
        assert run["gaps"] == 0 and run["out_of_order"] == 0 and run["closed"] == 0, run
        assert run["log_problems"] == [], run

    report = out.read_text()
    assert report.startswith("# Benchmarks")
    assert "## Message layer" in report
    assert report.count("<!-- rpc:begin -->") == 1
    assert report.count("<!-- rpc:end -->") == 1
    assert "| gobstopper messages | 1 | json |" in report
    assert "| gobstopper messages | 10 |" in report
    assert "calls, 1 connection, json:" in report
    assert "channels, 10 subscribers:" in report


@pytest.mark.timeout(90)
def test_history_benchmark_runs(tmp_path: Path) -> None:
    require_picows()
    from .redis_server import require_redis

    require_redis()
    out, runs = run_benchmark(
        "benchmarks.history",
        [
            *("--rooms", "10", "--duration", "0.5", "--warmup", "0.2", "--repeat", "1"),
            *("--retries", "0", "--history-size", "100"),
        ],
        tmp_path,
        timeout=80,
    )
    assert [r["server"] for r in runs] == [
        "memory, no history",
        "memory, history",
        "Redis, no history",
        "Redis, history",
    ]
    for run in runs:
        assert run["error"] is None, run
        assert run["receivers"] == 10, run
        assert run["deliveries_per_s"] > 0, run
        assert run["p50_ms"] is not None, run
        # Every subscriber got every publication, in order; with history, each push's
        # offset followed its sequence number.
        assert run["gaps"] == 0 and run["out_of_order"] == 0, run
        assert run["wrong_offsets"] == 0 and run["closed"] == 0, run
        assert run["log_problems"] == [], run
        # Redis's CPU is measured apart from the server's, only where Redis runs.
        assert (run["redis_cpu"] is not None) == run["server"].startswith("Redis"), run

    report = out.read_text()
    assert report.count("<!-- history:begin -->") == 1
    assert report.count("<!-- history:end -->") == 1
    assert "| Redis, history | 10 |" in report
    assert "- memory store, 10 subscribers: history on at " in report
    assert "- Redis store, 10 subscribers: history on at " in report

    from benchmarks.__main__ import goals_section
    from benchmarks.history import HistorySummary

    summary = json.loads((tmp_path / "results.json").read_text())["summary"]
    section = goals_section([], [], [], "cmd", [HistorySummary(**row) for row in summary])
    assert "- Redis store, 10 subscribers: history on at " in section
