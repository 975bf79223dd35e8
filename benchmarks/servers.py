"""Granian servers for the benchmarks: start on a free port, pinned; CPU time; stop."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ROOT",
    "ServerProcess",
    "event_loop_name",
    "free_port",
    "machine_busy_seconds",
    "pinning_available",
]

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 10.0
# Server log lines worth reporting.
_LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|Exception")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinning_available() -> bool:
    """Pin the server to core 1 and this process to core 0 only with two cores or more."""
    return (
        shutil.which("taskset") is not None
        and hasattr(os, "sched_setaffinity")
        and {0, 1} <= os.sched_getaffinity(0)
    )


def event_loop_name() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "auto"


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @classmethod
    def start(cls, target: str, interface: str, pin: bool) -> ServerProcess:
        port = free_port()
        fd, name = tempfile.mkstemp(prefix=f"fanout-{interface}-", suffix=".log")
        os.close(fd)
        argv = [
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
            "--loop",
            event_loop_name(),
            "--no-access-log",
            target,
        ]
        return cls.launch(argv, port, Path(name), pin)

    @classmethod
    def launch(cls, argv: list[str], port: int, log_path: Path, pin: bool) -> ServerProcess:
        """Run ``argv`` (a server listening on ``port``), logging to ``log_path``."""
        if pin:
            argv = ["taskset", "-c", "1", *argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = cls(proc, port, log_path)
        try:
            server.wait_listening(SERVER_START_TIMEOUT)
        except BaseException:
            server.stop()
            server.log_path.unlink(missing_ok=True)  # its text is in the error raised
            raise
        return server

    def wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
            try:
                self.proc.wait(0.05)  # the pause between attempts, and a check it lives
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        raise RuntimeError(f"server did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes (Linux only)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in _process_tree(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def stop(self) -> int:
        """SIGINT, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                for pid in _process_tree(self.proc.pid)[1:]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def problems(self) -> list[str]:
        return [line for line in self.log().splitlines() if _LOG_PROBLEM.search(line)]


def machine_busy_seconds() -> float | None:
    """CPU time spent so far by all processes, plus time stolen by the hypervisor.

    Interrupt time is left out: it is mostly the loopback traffic of the benchmark itself.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system = int(fields[1]), int(fields[2]), int(fields[3])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    i = 0
    while i < len(pids):
        try:
            tasks = os.listdir(f"/proc/{pids[i]}/task")
        except OSError:
            tasks = []
        for tid in tasks:
            try:
                children = Path(f"/proc/{pids[i]}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            pids.extend(int(c) for c in children)
        i += 1
    return pids
