"""Channel routing across nodes: what a publication costs the nodes that have no
subscriber for it.

Four nodes by default (``--nodes``), each its own granian server (one worker, uvloop,
``benchmarks/apps/gob_channels.py``), all on one broker: Redis, Redis Cluster or NATS.
The first half of the nodes have the subscribers of ``ticks.a`` (spread evenly); each
node of the other half has only subscribers of ``other.b`` (``--others`` per node). One
publisher, connected to the first node, keeps 128 ``publish(data)`` requests to
``ticks.a`` in flight (the message layer benchmark's channel load, ``rpc_loadgen.py``).

With Redis, a channel publication goes to every node that has any channel subscriber,
and each node matches it against its own subscriptions; with NATS, channels are subjects
and the broker delivers a publication only to the nodes whose subscriptions match it.
The key figure is the messages the broker handed each node without a matching subscriber
per publication, counted by each node as its broker hands them over (``GET /received``);
with NATS, the server's own count of the messages it sent each node's connection
(``/connz``) is kept beside it. Each run also checks that the ``other.b`` subscribers got
nothing, and that every ``ticks.a`` subscriber got every publication, in order.

    python -m benchmarks.routing            # full run, writes docs/benchmarks.md
    python -m benchmarks.routing --quick    # shorter, one repeat

Results go between the ``<!-- routing:begin -->`` and ``<!-- routing:end -->`` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from picows import WSTransport, ws_connect

from .brokers import BROKERS, BrokerProcess, NatsProcess, Watched, broker_versions, missing_programs
from .cli import add_retry_options, check_retry_options, in_turns, positive_ints
from .loadgen import (
    CONNECT_TIMEOUT,
    MESSAGE_BYTES,
    RING,
    RunResult,
    Sender,
    Settings,
    _connect_all,
    _disconnect,
    _factory,
    _send_and_measure,
)
from .report import (
    _median,
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
from .rpc_loadgen import Channel, Subscriber, _subscribe_all, notification_bytes
from .servers import (
    ROOT,
    ServerProcess,
    ServerSpec,
    _granian,
    error_text,
    event_loop_name,
    least_disturbed,
    pinning_available,
    run_loop,
)

__all__ = ["BEGIN", "END", "RoutingRun", "RoutingSummary", "main"]

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- routing:begin -->"
END = "<!-- routing:end -->"
APP = "benchmarks.apps.gob_channels:app"
CHANNEL = "ticks.a"
OTHER = "other.b"
#: The broker every ratio is taken to.
BASELINE = "Redis"
#: Time for the broker's last messages to reach the nodes before they are counted.
SETTLE_S = 0.3


@dataclass
class RoutingRun(RunResult):
    """A run, with what the broker handed each node, per publication."""

    nodes: int = 0
    others: int = 0  # subscribers of ``other.b`` on each node without a match
    broker_cpu: float | None = None
    #: Per node, in order (the matching half first): messages the broker handed it
    #: while the publisher published, per publication.
    per_publication: list[float] = field(default_factory=list)
    #: The same, as the NATS server counted the messages it sent each node.
    nats_per_publication: list[float] = field(default_factory=list)
    stray: int = 0  # ``ticks.a`` notifications the ``other.b`` subscribers got


# -- one run ------------------------------------------------------------------------------


def _received(port: int) -> tuple[int, str]:
    """A node's count of the messages its broker handed it, and its node id."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("GET", "/received")
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return int(body["total"]), str(body["node"])


def _nats_sent(nats: NatsProcess) -> dict[str, int]:
    """Node id -> messages the NATS server has sent that node's connection."""
    status, connz = nats.monitor("/connz?limit=1024")
    if status != 200 or connz is None:
        return {}
    sent: dict[str, int] = {}
    for conn in connz.get("connections") or []:
        name = str(conn.get("name") or "")
        if name.startswith("gobstopper "):
            node = name.split(" ", 1)[1]
            sent[node] = sent.get(node, 0) + int(conn.get("out_msgs") or 0)
    return sent


async def _counts(
    servers: Sequence[ServerProcess], nats: NatsProcess | None
) -> tuple[list[int], list[int]]:
    """Each node's own count, and (with NATS) the server's, in the order of ``servers``."""
    node = await asyncio.gather(*(asyncio.to_thread(_received, s.port) for s in servers))
    by_broker = await asyncio.to_thread(_nats_sent, nats) if nats is not None else {}
    return [n for n, _ in node], [by_broker.get(i, 0) for _, i in node] if by_broker else []


async def measure_routing(
    servers: Sequence[ServerProcess],
    receivers: int,
    others: int,
    settings: Settings,
    watched: Watched,
    nats: NatsProcess | None,
) -> RoutingRun:
    """Connect and subscribe everyone, publish for ``warmup + duration`` seconds, drain,
    count what each node got from the broker meanwhile, disconnect."""
    result = RoutingRun(server="", receivers=receivers, repeat=0)
    half = len(servers) // 2
    unmatched = servers[half:]
    room = Channel(receivers, settings.window, channel=CHANNEL)
    stray_room = Channel(others * len(unmatched), settings.window, channel=OTHER)
    members = [Subscriber(room, i, CHANNEL) for i in range(receivers)]
    strays = [Subscriber(stray_room, i, OTHER) for i in range(stray_room.n)]
    publisher = Sender()
    sender: WSTransport | None = None
    urls = [f"ws://127.0.0.1:{s.port}/rpc" for s in servers]
    try:
        for k in range(half):
            await asyncio.wait_for(_connect_all(urls[k], members[k::half]), CONNECT_TIMEOUT)
        for k in range(len(unmatched)):
            group = strays[k * others : (k + 1) * others]
            await asyncio.wait_for(_connect_all(urls[half + k], group), CONNECT_TIMEOUT)
        await _subscribe_all(room, members)
        if strays:
            await _subscribe_all(stray_room, strays)
        transport, _ = await asyncio.wait_for(
            ws_connect(_factory(publisher), urls[0]), CONNECT_TIMEOUT
        )
        room.sender = sender = transport
        await asyncio.sleep(SETTLE_S)  # the subscriptions' own broker traffic, settled
        node0, nats0 = await _counts(servers, nats)
        target = cast(ServerProcess, watched)  # it has what the run reads
        await _send_and_measure(room, members, publisher, room.frame_size, settings, target, result)
        await asyncio.sleep(SETTLE_S)
        node1, nats1 = await _counts(servers, nats)
        published = max(1, room.sent)
        result.per_publication = [(b - a) / published for a, b in zip(node0, node1, strict=True)]
        result.nats_per_publication = [
            (b - a) / published for a, b in zip(nats0, nats1, strict=True)
        ]
        result.stray = stray_room.delivered
        result.nodes, result.others = len(servers), others
        return result
    finally:
        room.sending = False
        room.stopping = stray_room.stopping = True
        await _disconnect([m.transport for m in [*members, *strays]] + [sender])


def run_broker(
    broker_name: str,
    receivers: int,
    repeat: int,
    settings: Settings,
    args: argparse.Namespace,
) -> RoutingRun:
    """One run on fresh nodes and a fresh broker; again while other processes were busy."""

    def failed(error: str) -> RoutingRun:
        return RoutingRun(broker_name, receivers, repeat, nodes=args.nodes, error=error)

    def attempt() -> RoutingRun:
        broker: BrokerProcess | None = None
        servers: list[ServerProcess] = []
        watched: Watched | None = None
        try:
            broker = BROKERS[broker_name][0](settings.pin)
            spec = ServerSpec(
                broker_name, _granian(APP, "rsgi"), {"GOBSTOPPER_BROKER_URL": broker.url}
            )
            for _ in range(args.nodes):
                servers.append(ServerProcess.start(spec, settings.pin))
            watched = Watched(servers, broker)
            nats = broker if isinstance(broker, NatsProcess) else None
            coro = measure_routing(servers, receivers, args.others, settings, watched, nats)
            result = run_loop(coro)
        except Exception as exc:
            result = failed(error_text(exc))
        finally:
            for server in servers:
                server.stop()
            if broker is not None:
                broker.stop()
        result.server, result.repeat = broker_name, repeat
        result.log_problems = sorted({line for s in servers for line in s.problems()})
        for server in servers:
            server.log_path.unlink(missing_ok=True)
        if watched is not None and result.error is None and result.server_cpu is not None:
            result.broker_cpu = watched.broker_share()
            result.server_cpu -= result.broker_cpu or 0.0
        return result

    return least_disturbed(
        attempt, args.retries, args.max_other, _progress, "others were busy: again"
    )


def _per_node(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "-"


def _progress(r: RoutingRun) -> str:
    head = f"[run {r.repeat}] {r.server:<14} {r.receivers:>5} subscribers: "
    if r.error is not None:
        return head + f"FAILED {r.error}"
    return head + (
        f"{r.deliveries_per_s / 1000:6.1f} k deliveries/s, p99 {fmt_num(r.p99_ms, '.1f')} ms, "
        f"gaps {r.gaps}, out of order {r.out_of_order}, stray {r.stray}; broker messages "
        f"per publication by node {_per_node(r.per_publication)}"
        + (
            f" (NATS server's count {_per_node(r.nats_per_publication)})"
            if r.nats_per_publication
            else ""
        )
        + f"; server CPU {fmt_pct(r.server_cpu)}, broker CPU {fmt_pct(r.broker_cpu)}, "
        f"load generator CPU {fmt_pct(r.bench_cpu)}, others {fmt_pct(r.other_cpu)}"
    )


# -- summaries and report -----------------------------------------------------------------


@dataclass
class RoutingSummary:
    server: str  # the broker
    receivers: int
    nodes: int
    runs: int
    failed: int
    deliveries_per_s: float | None
    low: float | None
    high: float | None
    ratio: float | None  # to Redis, paired within each repeat
    p50_ms: float | None
    p99_ms: float | None
    gaps: int
    out_of_order: int
    closed: int
    stray: int
    matching: list[float]  # per node with subscribers of the channel (median over runs)
    unmatched: list[float]  # per node without
    nats_unmatched: list[float]  # the same, as the NATS server counted them
    server_cpu: float | None
    broker_cpu: float | None
    bench_cpu: float | None
    saturated: str


def _column(runs: Sequence[RoutingRun], pick: str, nodes: slice) -> list[float]:
    """Per node of ``nodes``: the median over ``runs`` of its figure ``pick``."""
    rows = [getattr(r, pick)[nodes] for r in runs if getattr(r, pick)]
    if not rows:
        return []
    return [
        v for v in (_median([row[i] for row in rows]) for i in range(len(rows[0]))) if v is not None
    ]


def summarise_routing(
    results: Sequence[RoutingRun], brokers: Sequence[str], pin: bool
) -> list[RoutingSummary]:
    summaries = []
    for receivers in sorted({r.receivers for r in results}):
        same = [r for r in results if r.receivers == receivers]
        base = [r for r in same if r.server == BASELINE]
        for name in brokers:
            runs = [r for r in same if r.server == name]
            if not runs:
                continue
            ok = [r for r in runs if r.error is None]
            figures = rate_figures(runs, base, lambda r: r.deliveries_per_s)
            broker_cpu = _median([r.broker_cpu for r in ok])
            nodes = max((r.nodes for r in runs), default=0)
            half = slice(0, nodes // 2)
            rest = slice(nodes // 2, nodes)
            summaries.append(
                RoutingSummary(
                    server=name,
                    receivers=receivers,
                    nodes=nodes,
                    deliveries_per_s=_median([r.deliveries_per_s for r in ok]),
                    gaps=sum(r.gaps for r in ok),
                    out_of_order=sum(r.out_of_order for r in ok),
                    stray=sum(r.stray for r in ok),
                    matching=_column(ok, "per_publication", half),
                    unmatched=_column(ok, "per_publication", rest),
                    nats_unmatched=_column(ok, "nats_per_publication", rest),
                    broker_cpu=broker_cpu,
                    saturated=saturation(
                        figures["server_cpu"], broker_cpu, figures["bench_cpu"], pin, name
                    ),
                    **figures,
                )
            )
    return summaries


def routing_table(summaries: Sequence[RoutingSummary]) -> str:
    lines = [
        "| broker | subscribers | deliveries/s | ratio to Redis | p50 ms | p99 ms "
        "| gaps / out of order / stray | broker messages per publication, nodes without "
        "a subscriber | ... nodes with subscribers | server CPU | broker CPU "
        "| load generator CPU | saturated | runs (min-max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in summaries:
        cells = [
            s.server,
            str(s.receivers),
            fmt_k(s.deliveries_per_s),
            fmt_num(s.ratio, ".2f"),
            fmt_num(s.p50_ms, ".1f"),
            fmt_num(s.p99_ms, ".1f"),
            f"{s.gaps} / {s.out_of_order} / {s.stray}",
            _per_node(s.unmatched),
            _per_node(s.matching),
            fmt_pct(s.server_cpu),
            fmt_pct(s.broker_cpu),
            fmt_pct(s.bench_cpu),
            s.saturated,
            runs_cell(s, [(s.closed, "closed")]),
        ]
        lines.append(table_row(cells))
    return "\n".join(lines)


def findings(summaries: Sequence[RoutingSummary]) -> list[str]:
    """One line per broker and room: its rate against Redis's, and what the nodes without
    a subscriber got."""
    lines = []
    for s in summaries:
        if not s.unmatched:
            continue
        got = sum(s.unmatched) / len(s.unmatched)
        rate = (
            "" if s.server == BASELINE else f"{fmt_num(s.ratio, '.2f')} of Redis's deliveries/s; "
        )
        check = ""
        if s.nats_unmatched:
            check = f" (the NATS server's count: {_per_node(s.nats_unmatched)})"
        lines.append(
            f"- {s.server}, {s.receivers:,} subscribers: {rate}each node without a "
            f"subscriber of `{CHANNEL}` got {got:.2f} broker messages per publication"
            f"{check}; saturated: {s.saturated}"
        )
    return lines


def routing_report(
    results: Sequence[RoutingRun],
    summaries: Sequence[RoutingSummary],
    args: argparse.Namespace,
    command: str,
) -> str:
    errors = [
        f"{r.server}, run {r.repeat}: `{r.error.splitlines()[0][:200]}`" for r in results if r.error
    ]
    loads = [r.other_cpu for r in results if r.other_cpu is not None]
    others = (
        f"other processes used {min(loads) * 100:.0f}-{max(loads) * 100:.0f} % of a core "
        "in the runs kept"
        if loads
        else "the load of other processes was not measured"
    )
    frame = len(notification_bytes("x" * MESSAGE_BYTES, CHANNEL))
    half = args.nodes // 2
    where = machine(args.pin).replace("server on core 1", "nodes and broker on core 1")
    parts = [
        BEGIN,
        measured(command),
        "",
        routing_table(summaries),
        "",
        *findings(summaries),
        "",
        f"- Machine: {where}.",
        f"- Versions: Python {platform.python_version()}, granian {_version('granian')}, "
        f"{broker_versions(list(args.brokers))}; gobstopper at {source_revision()}.",
        f"- Nodes: {args.nodes} granian RSGI servers of one worker each, `--loop "
        f"{event_loop_name()}`, on one broker; the {receivers_text(args)} subscribers of "
        f"`{CHANNEL}` spread over the first {half}, {args.others} subscribers of `{OTHER}` "
        f"on each of the other {args.nodes - half}; the publisher on the first node. Fresh "
        "nodes and a fresh broker for each run.",
        f"- Load: {MESSAGE_BYTES} bytes of data in a {frame}-byte notification, at most "
        f"{args.window} publications in flight (publication k once every subscriber has "
        f"k-{args.window}); {args.warmup:g} s of warm-up, then {args.duration:g} s measured.",
        "- Broker messages per publication: what each node's broker handed it from the "
        "first publication to the last (warm-up and drain included) over the publications; "
        "per node, the matching half first, medians over the runs. Stray: `"
        f"{CHANNEL}` notifications that reached a subscriber of `{OTHER}` (none should).",
        "- CPU: the share of one core used while measuring, server CPU all nodes together "
        "without the broker's. *Saturated* names the side at 90 % of its core or more "
        "(with pinning, the nodes' core holds the nodes and the broker).",
        f"- {_plural(args.repeat, 'run')} per row, the brokers taking turns; a run is "
        f"measured again (at most {_plural(args.retries, 'time')}) when other processes "
        f"used more than {args.max_other * 100:.0f} % of a core. Noise: a shared machine; "
        f"{spread(summaries)}; {others}. Quote the ratios rather than the absolute figures.",
    ]
    if args.left_out:
        parts.append(
            "- Left out: "
            + "; ".join(f"{b} ({p} is not installed)" for b, p in args.left_out.items())
            + "."
        )
    parts += closing_lines(errors, log_problems(results))
    parts.append(END)
    return "\n".join(parts)


def receivers_text(args: argparse.Namespace) -> str:
    return " or ".join(f"{n:,}" for n in args.room_sizes)


_INTRO = """## Channel routing: what nodes without a subscriber receive

`python -m benchmarks.routing` publishes to one channel whose subscribers are on half
the nodes, with the Redis, Redis Cluster and NATS brokers, and counts the broker
messages that reach the nodes without a subscriber for it.
"""


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.routing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, one run per row")
    p.add_argument("--rooms", default="100,1000", help="subscribers of the channel")
    p.add_argument("--brokers", default=",".join(BROKERS), help="of: " + ",".join(BROKERS))
    p.add_argument("--nodes", type=int, default=4, help="nodes, an even number (default 4)")
    p.add_argument(
        "--others", type=int, default=10, help="subscribers of the other channel per node"
    )
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 1)")
    p.add_argument("--repeat", type=int, help="runs per configuration (default 3)")
    p.add_argument("--window", type=int, default=Settings.window, help="publications in flight")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown file to update")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    add_retry_options(p)
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.room_sizes = positive_ints(p, "--rooms", args.rooms)
    chosen = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(chosen) - set(BROKERS)
    if unknown or not chosen:
        p.error(f"--brokers: choose from {','.join(BROKERS)}")
    if args.nodes < 2 or args.nodes % 2 or args.others < 0:
        p.error("--nodes must be an even number of 2 or more, --others not negative")
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        p.error("--duration and --repeat must be positive, --warmup not negative")
    if not 1 <= args.window <= RING // 4:
        p.error(f"--window must be from 1 to {RING // 4}")
    check_retry_options(p, args)
    args.left_out = missing_programs(chosen)
    args.brokers = [b for b in BROKERS if b in chosen and b not in args.left_out]
    if not args.brokers:
        p.error("none of the brokers can be started: " + ", ".join(args.left_out.values()))
    args.pin = not args.no_pin and pinning_available()
    args.settings = Settings(args.window, args.warmup, args.duration, 4, args.pin)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.routing", *given])
    if args.pin:
        os.sched_setaffinity(0, {0})
    for broker, program in args.left_out.items():
        print(f"{program} is not installed: no {broker} runs", flush=True)
    started = time.monotonic()
    results = in_turns(
        args.repeat,
        [(receivers, broker) for receivers in args.room_sizes for broker in args.brokers],
        lambda case, repeat: run_broker(case[1], case[0], repeat, args.settings, args),
        _progress,
    )
    summaries = summarise_routing(results, args.brokers, args.pin)
    section = routing_report(results, summaries, args, command)
    replace_section(args.out, BEGIN, END, section, _INTRO + "\n" + section)
    save_json(args.json, results, summaries)
    print()
    print(section)
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
