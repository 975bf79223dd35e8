"""Reconnect storm: every client dropped at once by a restart, then back with backoff.

For each server (gobstopper under granian RSGI and under uvicorn, Starlette on uvicorn;
one process, one worker, uvloop, pinned to core 1 when it can), this process (pinned to
core 0) opens N connections with picows (5,000; 500 with ``--quick``), each of which
joins a room (``join``, then ``joined`` once the server has it in the room: see
``benchmarks/apps/gob_storm.py`` and ``starlette_storm.py``). Then it kills the server
(all connections dropped at the same instant), starts it again on the same port, and
lets every client reconnect the way gobstopper's Python client does: after a drop or a
refused attempt it waits the next delay of ``Backoff(0.1, 5.0)`` (0.1 s doubling to 5 s,
each drawn from [0.5, 1] of its nominal value), and starts again from 0.1 s once
connected. It measures the time until all are connected and in the room again, the
server's peak resident memory and its CPU during that time.

    python -m benchmarks.storm            # full run, writes docs/benchmarks.md
    python -m benchmarks.storm --quick    # 500 clients, one run

Results go between the ``<!-- storm:begin -->`` and ``<!-- storm:end -->`` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from gobstopper._util import Backoff

from .cli import in_turns, server_keys
from .loadgen import Clocks, record_cpu
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
    _granian,
    _process_tree,
    _uvicorn,
    error_text,
    pinning_available,
    raise_open_files_limit,
    run_loop,
)

__all__ = ["SERVERS", "StormResult", "StormSummary", "main", "storm_table", "summarise_storm"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- storm:begin -->"
END = "<!-- storm:end -->"
_GOB, _STARLETTE = "benchmarks.apps.gob_storm:app", "benchmarks.apps.starlette_storm:app"
SERVERS: dict[str, ServerSpec] = {
    "gob-rsgi": ServerSpec("gobstopper RSGI", _granian(_GOB, "rsgi")),
    "gob-uvicorn": ServerSpec("gobstopper uvicorn", _uvicorn(_GOB)),
    "starlette": ServerSpec("Starlette uvicorn", _uvicorn(_STARLETTE)),
}
FILES_SPARE = 512  # descriptors kept for everything but the connections
CONNECT_BATCH = 100  # connections opened at once while filling
FILL_TIMEOUT = 60.0
SAMPLE_EVERY = 0.05  # seconds between two readings of the server's memory
_TEXT, _CLOSE = WSMsgType.TEXT, WSMsgType.CLOSE
JOIN, JOINED = b"join", b"joined"


@dataclass
class StormResult:
    server: str
    repeat: int
    clients: int = 0
    fill_s: float | None = None  # opening and joining them all, the first time
    recovery_s: float | None = None  # from the drop until all are back in the room
    after_listen_s: float | None = None  # from the new server listening until then
    attempts: int = 0  # connection attempts during the recovery
    refused: int = 0  # of those, the ones that failed
    rss_before: int | None = None  # bytes, the server's memory with all joined, first time
    peak_rss: int | None = None  # bytes, the new server's highest reading in the recovery
    rss_after: int | None = None  # bytes, once all are back
    server_cpu: float | None = None  # share of one core, from listening until all are back
    bench_cpu: float | None = None
    other_cpu: float | None = None
    log_problems: list[str] = field(default_factory=list)
    error: str | None = None


class _Crowd:
    """What the clients share: the URL, the counts, and the stop flag."""

    def __init__(self, url: str, total: int) -> None:
        self.url = url
        self.total = total
        self.target = total  # all_joined is set once this many are in the room
        self.joined = 0
        self.attempts = 0
        self.refused = 0
        self.all_joined = asyncio.Event()
        self.stop = False


class StormClient(WSListener):
    """One client: connect, join, stay; after a drop, reconnect with the client's backoff."""

    def __init__(self, crowd: _Crowd) -> None:
        super().__init__()
        self.crowd = crowd
        self.backoff = Backoff(0.1, 5.0)
        self.joined = False
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.backoff.reset()
        transport.send(_TEXT, JOIN)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type == _TEXT and not self.joined and frame.get_payload_as_bytes() == JOINED:
            self.joined = True
            crowd = self.crowd
            crowd.joined += 1
            if crowd.joined >= crowd.target:
                crowd.all_joined.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.joined:
            self.joined = False
            self.crowd.joined -= 1

    async def run(self) -> None:
        crowd = self.crowd
        while not crowd.stop:
            crowd.attempts += 1
            try:
                transport, _ = await ws_connect(lambda: self, crowd.url)
            except Exception:  # refused (the server is down), reset, or timed out
                crowd.refused += 1
            else:
                await transport.wait_disconnected()
            if crowd.stop:
                return
            await asyncio.sleep(self.backoff.next())


def _kill_tree(server: ServerProcess) -> None:
    """Drop every connection at once: SIGKILL the server and its workers."""
    for pid in reversed(_process_tree(server.proc.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait(10)


async def _peak_rss(server: ServerProcess, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], server.rss_bytes())
        await asyncio.sleep(SAMPLE_EVERY)


async def measure_storm(
    spec: ServerSpec,
    clients: int,
    timeout: float,
    pin: bool,
    result: StormResult,
    servers: list[ServerProcess],
) -> None:
    """Fill, drop, restart, wait until all are back; fills ``result``. Every server
    process started goes into ``servers``, for the caller to stop and read the logs of."""
    servers.append(ServerProcess.start(spec, pin))
    port = servers[0].port
    crowd = _Crowd(f"ws://127.0.0.1:{port}/ws/storm", clients)
    crowd_clients = [StormClient(crowd) for _ in range(clients)]
    tasks: list[asyncio.Future[None]] = []
    sampler: asyncio.Future[None] | None = None
    try:
        started = time.perf_counter()
        for start in range(0, clients, CONNECT_BATCH):
            batch = crowd_clients[start : start + CONNECT_BATCH]
            crowd.target = start + len(batch)
            crowd.all_joined.clear()
            tasks += [asyncio.ensure_future(c.run()) for c in batch]
            await asyncio.wait_for(crowd.all_joined.wait(), FILL_TIMEOUT)
        result.fill_s = time.perf_counter() - started
        result.clients = clients
        result.rss_before = servers[0].rss_bytes()

        crowd.all_joined.clear()
        crowd.attempts = crowd.refused = 0
        dropped = time.perf_counter()
        _kill_tree(servers[0])
        fd, name = tempfile.mkstemp(prefix="bench-", suffix=".log")
        os.close(fd)
        # In a thread: the clients' timers must keep running while it starts.
        new = await asyncio.get_running_loop().run_in_executor(
            None, ServerProcess.launch, spec.command(port), port, Path(name), pin, spec.env
        )
        servers.append(new)
        listening = time.perf_counter()
        start_clocks = Clocks.read(new)
        peak = [new.rss_bytes()]
        sampler = asyncio.ensure_future(_peak_rss(new, peak))
        left = timeout - (listening - dropped)
        try:
            await asyncio.wait_for(crowd.all_joined.wait(), max(left, 0.001))
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{crowd.joined} of {clients} back in the room after {timeout:g} s"
            ) from None
        end = time.perf_counter()
        end_clocks = Clocks.read(new)
        result.recovery_s = end - dropped
        result.after_listen_s = end - listening
        record_cpu(result, start_clocks, end_clocks)
        result.attempts, result.refused = crowd.attempts, crowd.refused
        result.peak_rss = max(peak[0], new.rss_bytes())
        result.rss_after = new.rss_bytes()
    finally:
        crowd.stop = True
        if sampler is not None:
            sampler.cancel()
        for c in crowd_clients:
            if c.transport is not None and not c.transport.is_disconnected:
                c.transport.disconnect()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()


def run_server(spec: ServerSpec, repeat: int, args: argparse.Namespace) -> StormResult:
    """One storm on ``spec``; a result whatever happens, with the servers' log problems."""
    result = StormResult(spec.name, repeat)
    servers: list[ServerProcess] = []
    try:
        run_loop(measure_storm(spec, args.clients, args.timeout, args.pin, result, servers))
    except Exception as exc:
        result.error = error_text(exc)
    finally:
        for server in servers:
            server.stop()
            result.log_problems += [p for p in server.problems() if p not in result.log_problems]
            server.log_path.unlink(missing_ok=True)
    return result


# -- report -------------------------------------------------------------------------------


@dataclass
class StormSummary:
    server: str
    runs: int
    failed_runs: int
    clients: int
    recovery_s: float | None
    recovery_ratio: float | None  # to the first server's
    after_listen_s: float | None
    attempts: float | None
    refused: float | None
    peak_rss: float | None
    peak_ratio: float | None
    server_cpu: float | None
    bench_cpu: float | None


def summarise_storm(results: Sequence[StormResult], servers: Sequence[str]) -> list[StormSummary]:
    baseline = [r for r in results if r.server == servers[0]]
    summaries = []
    for name in servers:
        runs = [r for r in results if r.server == name]
        if not runs:
            continue
        ok = [r for r in runs if r.error is None]
        summaries.append(
            StormSummary(
                server=name,
                runs=len(runs),
                failed_runs=len(runs) - len(ok),
                clients=max((r.clients for r in ok), default=0),
                recovery_s=_median([r.recovery_s for r in ok]),
                recovery_ratio=_paired_ratio(runs, baseline, lambda r: r.recovery_s),
                after_listen_s=_median([r.after_listen_s for r in ok]),
                attempts=_median([float(r.attempts) for r in ok]),
                refused=_median([float(r.refused) for r in ok]),
                peak_rss=_median([None if r.peak_rss is None else float(r.peak_rss) for r in ok]),
                peak_ratio=_paired_ratio(runs, baseline, lambda r: r.peak_rss),
                server_cpu=_median([r.server_cpu for r in ok]),
                bench_cpu=_median([r.bench_cpu for r in ok]),
            )
        )
    return summaries


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def storm_table(summaries: Sequence[StormSummary], baseline: str) -> str:
    lines = [
        "| server | clients | all back in the room after (s) | ratio to "
        f"{baseline} | after listening (s) | attempts | refused | server peak memory "
        f"| ratio to {baseline} | server CPU | load generator CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        cells = [
            s.server,
            str(s.clients),
            fmt_num(s.recovery_s, ".2f"),
            fmt_num(s.recovery_ratio, ".2f"),
            fmt_num(s.after_listen_s, ".2f"),
            fmt_num(s.attempts, ".0f"),
            fmt_num(s.refused, ".0f"),
            _mib(s.peak_rss),
            fmt_num(s.peak_ratio, ".2f"),
            fmt_pct(s.server_cpu),
            fmt_pct(s.bench_cpu),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def storm_report(
    summaries: Sequence[StormSummary],
    results: Sequence[StormResult],
    args: argparse.Namespace,
    command: str,
) -> str:
    errors = [
        f"{r.server}, run {r.repeat}: `{r.error.splitlines()[0][:200]}`"
        for r in results
        if r.error is not None
    ]
    parts = [
        BEGIN,
        measured(command),
        "",
        storm_table(summaries, args.server_names[0]),
        "",
        f"- Machine: {machine(args.pin)}; open-file limit {args.files_limit}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"uvicorn {_version('uvicorn')}, Starlette {_version('starlette')}, picows "
        f"{_version('picows')}; gobstopper {_version('gobstopper-rt')} at {source_revision()}.",
        f"- {args.clients} clients, opened {CONNECT_BATCH} at a time, each joined to one "
        "room; then the server killed (every connection dropped at once) and started "
        "again on the same port. 'All back' runs from the kill until every client is "
        "connected and in the room again; 'after listening' from the moment the new "
        "server accepts connections. Each client reconnects with the Python client's "
        "backoff (0.1 s doubling to 5 s, jitter [0.5, 1], reset once connected): "
        "'attempts' counts its tries, 'refused' the failed ones (most while the server "
        "was down).",
        "- Peak memory: the new server's resident memory (all its processes), read every "
        f"{SAMPLE_EVERY * 1000:.0f} ms until all are back. CPU: shares of one core from "
        "listening until all are back; the side near 100 % is the one that set the pace.",
        f"- {_plural(args.repeat, 'run')} per server, the servers taking turns; medians "
        f"over the runs, ratios paired within each repeat; at most {args.timeout:g} s "
        "for the recovery.",
    ]
    parts += closing_lines(errors, log_problems(results))
    parts.append(END)
    return "\n".join(parts)


_INTRO = """## Reconnect storm: a restart, and every client back

`python -m benchmarks.storm` connects thousands of clients, each joined to a room,
drops them all at once by killing the server, starts it again, and measures how long
the clients, reconnecting with the Python client's backoff, take to be back in the room,
and what the server spends meanwhile.
"""


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.storm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="500 clients, one run")
    p.add_argument("--clients", type=int, help="clients (default 5000)")
    p.add_argument("--timeout", type=float, help="seconds allowed for the recovery (default 60)")
    p.add_argument("--repeat", type=int, help="runs per server (default 2)")
    p.add_argument("--servers", default=",".join(SERVERS), help="of: " + ",".join(SERVERS))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    wanted = args.clients or (500 if args.quick else 5000)
    args.timeout = args.timeout or (30.0 if args.quick else 60.0)
    args.repeat = args.repeat or (1 if args.quick else 2)
    if wanted < 1 or args.timeout <= 0 or args.repeat < 1:
        p.error("--clients, --timeout and --repeat must be positive")
    args.server_keys = server_keys(p, args.servers, SERVERS)
    args.server_names = [SERVERS[k].name for k in args.server_keys]
    args.files_limit = raise_open_files_limit(wanted + FILES_SPARE)
    args.clients = min(wanted, args.files_limit - FILES_SPARE)
    if args.clients < 1:
        p.error(f"the open-file limit ({args.files_limit}) leaves no room for clients")
    args.pin = not args.no_pin and pinning_available()
    return args


def _progress(r: StormResult) -> str:
    head = f"[run {r.repeat}] {r.server:<18}: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.clients} clients filled in {fmt_num(r.fill_s, '.2f')} s; all back "
        f"{fmt_num(r.recovery_s, '.2f')} s after the drop ({fmt_num(r.after_listen_s, '.2f')} s "
        f"after listening), {r.attempts} attempts, {r.refused} refused; peak "
        f"{_mib(r.peak_rss)} (before {_mib(r.rss_before)}), server CPU {fmt_pct(r.server_cpu)}, "
        f"load generator CPU {fmt_pct(r.bench_cpu)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.storm", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    started = time.monotonic()
    results = in_turns(
        args.repeat,
        args.server_keys,
        lambda key, repeat: run_server(SERVERS[key], repeat, args),
        _progress,
    )
    summaries = summarise_storm(results, args.server_names)
    section = storm_report(summaries, results, args, command)
    replace_section(args.out, BEGIN, END, section, _INTRO + "\n" + section)
    save_json(args.json, results, summaries)
    print()
    print(storm_table(summaries, args.server_names[0]))
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
