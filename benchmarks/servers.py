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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "ROOT",
    "UVICORN_WS",
    "RedisProcess",
    "ServerProcess",
    "ServerSpec",
    "error_text",
    "event_loop_name",
    "free_port",
    "least_disturbed",
    "machine_busy_seconds",
    "measure_on",
    "measure_workloads",
    "pinning_available",
    "process_cpu_seconds",
    "raise_open_files_limit",
    "run_loop",
    "run_measurement",
    "server_specs",
]

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 10.0
#: uvicorn's WebSocket implementation: of those installed here (websockets,
#: websockets-sansio; wsproto is not), websockets-sansio was the faster on the echo
#: benchmark (about 1.3-1.6x, for gobstopper and Starlette alike).
UVICORN_WS = "websockets-sansio"
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


@dataclass(frozen=True)
class ServerSpec:
    """A server to measure: its name in the tables, its command line for a port, the
    environment it adds, and its number of workers (granian only)."""

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1

    def command(self, port: int) -> list[str]:
        argv = self.argv(port)
        if self.workers != 1 and "--workers" in argv:
            argv[argv.index("--workers") + 1] = str(self.workers)
        return argv


def _granian(target: str, interface: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "granian", "--interface", interface),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--loop", event_loop_name(), "--no-access-log", target),
        ]

    return argv


def _uvicorn(target: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop" if event_loop_name() == "uvloop" else "asyncio"),
            *("--ws", UVICORN_WS, "--no-access-log", "--log-level", "warning", target),
        ]

    return argv


def _websockets(port: int) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "apps" / "websockets_app.py"), str(port)]


def server_specs(workload: str) -> dict[str, ServerSpec]:
    """key -> server for ``workload`` (``echo`` or ``fanout``); the first is the baseline.

    The raw RSGI and gobstopper apps exist per workload (``benchmarks/apps/raw_echo.py``,
    ``gob_fanout.py``, ...); the Starlette and ``websockets`` apps serve every workload.
    """
    raw, gob = f"benchmarks.apps.raw_{workload}:app", f"benchmarks.apps.gob_{workload}:app"
    specs = {
        "raw": ServerSpec("raw RSGI", _granian(raw, "rsgi")),
        "gob-rsgi": ServerSpec("gobstopper RSGI", _granian(gob, "rsgi")),
        "gob-asgi": ServerSpec("gobstopper ASGI", _granian(gob, "asgi")),
        "gob-uvicorn": ServerSpec("gobstopper uvicorn", _uvicorn(gob)),
        "starlette": ServerSpec("Starlette uvicorn", _uvicorn("benchmarks.apps.starlette_app:app")),
        "websockets": ServerSpec("websockets", _websockets),
    }
    if workload == "fanout":
        # Three raw baselines (``raw_fanout.py``), the ceiling first: never-awaited sends.
        raw = raw.removesuffix("app")
        specs = {
            "raw-never": ServerSpec("raw never-awaited", _granian(raw + "never_app", "rsgi")),
            "raw-credit": ServerSpec("raw credit", _granian(raw + "credit_app", "rsgi")),
            **specs,
        }
        specs["raw"] = replace(specs["raw"], name="raw await-all")
    return specs


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's open-file limit (inherited by the servers it starts) towards
    ``wanted``, within the hard limit; return the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @classmethod
    def start(cls, spec: ServerSpec, pin: bool) -> ServerProcess:
        """Start ``spec`` on a free port, logging to a temporary file."""
        port = free_port()
        fd, name = tempfile.mkstemp(prefix="bench-", suffix=".log")
        os.close(fd)
        return cls.launch(spec.command(port), port, Path(name), pin, spec.env)

    @classmethod
    def launch(
        cls,
        argv: list[str],
        port: int,
        log_path: Path,
        pin: bool,
        extra_env: dict[str, str] | None = None,
    ) -> ServerProcess:
        """Run ``argv`` (a server listening on ``port``), logging to ``log_path``."""
        if pin:
            argv = ["taskset", "-c", "1", *argv]
        env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
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
        return process_cpu_seconds(self.proc.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the server and its worker processes (Linux only)."""
        page = os.sysconf("SC_PAGE_SIZE")
        total = 0
        for pid in _process_tree(self.proc.pid):
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            except (OSError, IndexError, ValueError):
                continue
        return total

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


@dataclass
class RedisProcess:
    """A redis-server of the benchmark's own, on a free port, keeping nothing on disk."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, pin: bool, options: Sequence[str] = ()) -> RedisProcess:
        """Start one, with ``options`` added to its command line, and wait for its PONG."""
        port = free_port()
        folder = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        argv = [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(folder), "--loglevel", "warning"),
            *options,
        ]
        if pin:
            argv = ["taskset", "-c", "1", *argv]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis = cls(proc, port, folder)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return redis
            except OSError:
                pass
            try:
                proc.wait(0.05)
            except subprocess.TimeoutExpired:
                continue
            break
        redis.stop()
        raise RuntimeError("redis-server did not start")

    def cpu_seconds(self) -> float:
        """CPU time used so far by redis-server (Linux only)."""
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def version() -> str:
        try:
            out = subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        match = re.search(r"v=(\S+)", out)
        return match.group(1) if match else "unknown"


_R = TypeVar("_R")


def run_loop(coro: Coroutine[Any, Any, _R]) -> _R:
    """Run ``coro`` in a fresh event loop, uvloop's when installed."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.run(coro)
    return uvloop.run(coro)


def run_measurement(coro: Coroutine[Any, Any, _R], failed: Callable[[str], _R]) -> _R:
    """Run ``coro`` in a fresh event loop; ``failed(error)`` if it raises."""
    try:
        return run_loop(coro)
    except Exception as exc:
        return failed(error_text(exc))


def measure_on(
    spec: ServerSpec,
    pin: bool,
    measure: Callable[[ServerProcess], Coroutine[Any, Any, _R]],
    failed: Callable[[str], _R],
) -> tuple[_R, list[str]]:
    """Start ``spec``, run ``measure(server)`` in a fresh loop, stop the server.

    Returns the result (``failed(error)`` if anything went wrong) and the server's log
    lines worth reporting.
    """
    server: ServerProcess | None = None
    try:
        server = ServerProcess.start(spec, pin)
        result = run_loop(measure(server))
    except Exception as exc:
        result = failed(error_text(exc))
    finally:
        if server is not None:
            server.stop()
    if server is None:
        return result, []
    problems = server.problems()
    server.log_path.unlink(missing_ok=True)
    return result, problems


def error_text(exc: BaseException) -> str:
    """An exception as a run's ``error`` holds it."""
    return f"{type(exc).__name__}: {exc}"


class _Logged(Protocol):
    log_problems: list[str]


_L = TypeVar("_L", bound=_Logged)
_W = TypeVar("_W")


def measure_workloads(
    spec: ServerSpec,
    pin: bool,
    workloads: Sequence[_W],
    measure: Callable[[ServerProcess, _W], _L],
    failed: Callable[[_W, str], _L],
    progress: Callable[[_L], str],
) -> list[_L]:
    """Start one server, ``measure(server, workload)`` every workload on it, stop it.

    ``measure`` returns a result whatever happens; when the server cannot be started
    (or anything else goes wrong), the workloads left get ``failed(workload, error)``.
    Every result gets the server's log lines worth reporting; each one's ``progress``
    line is printed as it comes.
    """
    results: list[_L] = []
    server: ServerProcess | None = None
    try:
        server = ServerProcess.start(spec, pin)
        for workload in workloads:
            results.append(measure(server, workload))
            print(progress(results[-1]), flush=True)
    except Exception as exc:
        for workload in workloads[len(results) :]:
            results.append(failed(workload, error_text(exc)))
            print(progress(results[-1]), flush=True)
    finally:
        if server is not None:
            server.stop()
            problems = server.problems()
            for result in results:
                result.log_problems = problems
            server.log_path.unlink(missing_ok=True)
    return results


class _Attempt(Protocol):
    attempts: int
    other_cpu: float | None
    error: str | None


_A = TypeVar("_A", bound=_Attempt)


def least_disturbed(
    attempt: Callable[[], _A],
    retries: int,
    max_other: float,
    progress: Callable[[_A], str],
    again: str,
) -> _A:
    """Run ``attempt()``; again (``retries`` times at most) while the other processes of
    the machine used more than ``max_other`` of a core, printing its ``progress`` line
    and ``again``. Keeps the least disturbed run.

    The decision looks only at the machine's other load, never at the figures.
    """
    best: _A | None = None
    for number in range(1, retries + 2):
        result = attempt()
        result.attempts = number
        if best is None or (result.other_cpu or 0.0) < (best.other_cpu or 0.0):
            best = result
        if result.error is not None or (result.other_cpu or 0.0) <= max_other:
            break
        if number <= retries:
            print(f"{progress(result)}\n  {again}", flush=True)
    assert best is not None
    return best


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


def process_cpu_seconds(pid: int) -> float:
    """CPU time used so far by process ``pid`` and its children (Linux only)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in _process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


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
