"""A worker dies (SIGKILL, as the OOM killer sends it) under the documented multi-worker
command: granian with ``--respawn-failed-workers`` keeps serving and starts a
replacement; without the flag it stops every worker, and each worker warned of it at
start-up."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .helpers import WAIT, wait_until
from .servers import ROOT, Server, start

SPAWNED = re.compile(r"Spawning worker-(\d+) with PID: (\d+)")
STARTED = re.compile(r"\] Started worker-\d+$", re.MULTILINE)
WARNING = "without --respawn-failed-workers"


def documented_command() -> list[str]:
    """The first granian command of docs/deployment.md, run from this checkout: this
    Python's granian, on 127.0.0.1 (the port is filled in), serving the echo example."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("granian "))
    argv = shlex.split(line)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[-1] = "examples.echo:app"
    return [sys.executable, "-m", *argv]


def workers(server: Server) -> dict[int, int]:
    """The process id of each worker (by number) granian spawned last, from its log."""
    return {int(n): int(pid) for n, pid in SPAWNED.findall(server.log())}


def parent(pid: int) -> int | None:
    """The parent of a running process, None when it has ended (or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[1])


async def echo(server: Server, text: str) -> str:
    async with connect(f"{server.ws}/ws/echo", open_timeout=WAIT) as ws:
        await ws.send(text)
        return str(await ws.recv())


async def answers(server: Server) -> bool:
    """Whether an echo over a new connection comes back."""
    try:
        return await echo(server, "still here") == "still here"
    except (OSError, InvalidHandshake, ConnectionClosed):
        return False


async def start_two_workers(argv: list[str]) -> Server:
    server = start("", "rsgi", command=argv)
    # Granian listens as soon as one worker is up: wait for both.
    await wait_until(lambda: len(STARTED.findall(server.log())) >= 2, what=server.log)
    return server


async def test_the_documented_command_survives_a_dead_worker() -> None:
    argv = documented_command()
    assert argv[argv.index("--workers") + 1] == "2" and "--respawn-failed-workers" in argv
    server = await start_two_workers(argv)
    try:
        before = workers(server)
        assert sorted(before) == [1, 2]
        os.kill(before[1], signal.SIGKILL)
        # A connection that reaches it while it dies is lost with it: wait until it has.
        await wait_until(lambda: parent(before[1]) is None, what=server.log)
        # The other worker keeps answering while granian replaces the dead one (one
        # connection opened as granian respawns was seen dropped: retried, bounded).
        await wait_until(lambda: answers(server), what=server.log)
        await wait_until(lambda: workers(server)[1] != before[1], what=server.log)
        replacement = workers(server)[1]
        # Started: its app's start-up has run and it takes connections (and a stop now
        # reaches it: granian loses the signal of a worker still starting).
        await wait_until(lambda: len(STARTED.findall(server.log())) >= 3, what=server.log)
        assert parent(replacement) == server.proc.pid
        assert parent(before[2]) == server.proc.pid  # the survivor was left alone
        for i in range(4):
            assert await echo(server, f"after {i}") == f"after {i}"
        assert server.proc.poll() is None
        assert WARNING not in server.log()
    finally:
        code = server.stop()
    assert code == 0, server.log()


async def test_without_the_flag_a_dead_worker_stops_the_server() -> None:
    argv = documented_command()
    argv.remove("--respawn-failed-workers")
    server = await start_two_workers(argv)
    try:
        # Each worker warned once, naming the flag.
        assert server.log().count(WARNING) == 2, server.log()
        os.kill(workers(server)[1], signal.SIGKILL)
        await wait_until(lambda: server.proc.poll() is not None, what=server.log)
        assert "Respawning" not in server.log()
    finally:
        server.stop()
