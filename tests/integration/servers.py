"""Start and stop real servers on free ports of 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    interface: str
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)
    name: str = "granian"  # the server program: granian or uvicorn

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL if it does not exit in time; return the exit code.

        Whatever is left of the server's process group afterwards (a worker whose main
        process is gone) is killed too: no test leaves a process behind.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # start() gives every server a session (and process group) of its own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return int(self.proc.returncode)


def granian_command(target: str, interface: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        interface,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        target,
    ]


def uvicorn_command(target: str) -> list[str]:
    """uvicorn on ``{port}`` (filled in by ``start``), with its default WebSocket side."""
    return [
        *(sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"),
        *("--no-access-log", target),
    ]


def start(
    target: str,
    interface: str,
    env: dict[str, str] | None = None,
    *,
    command: list[str] | None = None,
    wait: bool = True,
    timeout: float = 20.0,
    cwd: Path | None = None,
    port: int | None = None,
) -> Server:
    """Start ``target`` under granian (or ``command``) and wait until it accepts connections
    (on ``port``, to restart a server where its clients expect it; a free one by default)."""
    port = port or free_port()
    fd, name = tempfile.mkstemp(prefix=f"gobstopper-{interface}-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    argv = command or granian_command(target, interface, port)
    argv = [a.replace("{port}", str(port)) for a in argv]
    if command is None or "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    with log_path.open("wb") as log:
        # Its own process group, as a server started from a shell has: tests can then
        # signal the whole group the way a terminal's Ctrl-C does.
        proc = subprocess.Popen(
            argv,
            cwd=cwd or ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, port, interface, log_path)
    if wait:
        wait_listening(server, timeout)
    return server


def wait_listening(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            pass
        try:
            # Doubles as the pause between attempts and as the check that it is alive.
            server.proc.wait(0.05)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
    server.stop()
    raise RuntimeError(f"server did not listen within {timeout}s:\n{server.log()}")


def server_fixture(target: str, doc: str, servers: tuple[str, ...] = ("rsgi", "asgi")) -> Any:
    """A module-scoped pytest fixture running ``target`` once per server: ``rsgi`` and
    ``asgi`` (granian's two interfaces), ``uvicorn`` (ASGI, written in Python)."""

    @pytest.fixture(scope="module", params=servers)
    def fixture(request: pytest.FixtureRequest) -> Iterator[Server]:
        if request.param == "uvicorn":
            server = start(target, "asgi", command=uvicorn_command(target))
            server.name = "uvicorn"
        else:
            server = start(target, request.param)
        yield server
        server.stop()

    fixture.__doc__ = doc
    return fixture
