"""The brokers the cluster benchmarks run against, each started on free ports and
stopped afterwards: a redis-server, a Redis Cluster of three masters, a nats-server.

Each is pinned to core 1 with the servers when pinning is on, keeps nothing once
stopped, and tells its URL (``GOBSTOPPER_BROKER_URL``), its CPU time and its version.
``Watched`` puts servers and their broker together as the load generator measures them.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .servers import (
    SERVER_START_TIMEOUT,
    SERVER_STOP_TIMEOUT,
    RedisProcess,
    ServerProcess,
    free_port,
    process_cpu_seconds,
)

__all__ = [
    "BROKERS",
    "BrokerProcess",
    "NatsProcess",
    "RedisClusterProcess",
    "Watched",
    "broker_versions",
    "missing_programs",
    "nats_program",
]

# Debian's package installs nats-server in /usr/sbin, which a user's PATH often lacks.
_NATS_FALLBACK = Path("/usr/sbin/nats-server")


class BrokerProcess(Protocol):
    """A broker of the benchmark's own."""

    @property
    def url(self) -> str: ...

    def cpu_seconds(self) -> float: ...

    def stop(self) -> None: ...


def nats_program() -> str | None:
    path = shutil.which("nats-server")
    if path is None and _NATS_FALLBACK.is_file():
        path = str(_NATS_FALLBACK)
    return path


def _version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(pattern, out)
    return match.group(1) if match else "unknown"


@dataclass
class NatsProcess:
    """A nats-server with JetStream (the NATS broker keeps presence in it), on free ports,
    with its HTTP monitoring port (``connz``)."""

    proc: subprocess.Popen[bytes]
    port: int
    monitor_port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, pin: bool) -> NatsProcess:
        program = nats_program()
        if program is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        port, monitor = free_port(), free_port()
        folder = Path(tempfile.mkdtemp(prefix="bench-nats-"))
        argv = [
            *(program, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)),
            *("-js", "-sd", str(folder)),
        ]
        if pin:
            argv = ["taskset", "-c", "1", *argv]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nats = cls(proc, port, monitor, folder)
        # /healthz answers 200 once JetStream can serve requests.
        _wait(proc, lambda: nats.monitor("/healthz")[0] == 200, nats.stop, "nats-server")
        return nats

    def monitor(self, path: str) -> tuple[int, Any]:
        """GET ``path`` from the monitoring port: the status (0: no answer) and the JSON."""
        conn = http.client.HTTPConnection("127.0.0.1", self.monitor_port, timeout=2.0)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        except OSError:
            return 0, None
        finally:
            conn.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def version() -> str:
        program = nats_program()
        return "unknown" if program is None else _version([program, "--version"], r"\bv(\d\S*)")


@dataclass
class RedisClusterProcess:
    """Three redis-servers in cluster mode, each serving a third of the slots."""

    masters: list[RedisProcess]

    MASTERS = 3

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in self.masters)

    @classmethod
    def start(cls, pin: bool) -> RedisClusterProcess:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (it comes with redis-server)")
        cluster = cls([])
        try:
            for _ in range(cls.MASTERS):
                options = [
                    # nodes.conf goes in the master's own --dir.
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    # Its own bus port: the default (port + 10000) may be taken.
                    *("--cluster-port", str(free_port())),
                ]
                cluster.masters.append(RedisProcess.start(pin, options))
            addresses = [f"127.0.0.1:{m.port}" for m in cluster.masters]
            create = ("--cluster-replicas", "0", "--cluster-yes")
            subprocess.run(
                [cli, "--cluster", "create", *addresses, *create],
                capture_output=True,
                check=True,
                timeout=SERVER_START_TIMEOUT,
            )
            _wait(None, cluster.ready, cluster.stop, "the Redis Cluster")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def ready(self) -> bool:
        cli = shutil.which("redis-cli") or "redis-cli"
        for master in self.masters:
            try:
                info = subprocess.run(
                    [cli, "-p", str(master.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                return False
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{self.MASTERS}" not in info:
                return False
        return True

    def cpu_seconds(self) -> float:
        return sum(m.cpu_seconds() for m in self.masters)

    def stop(self) -> None:
        for master in self.masters:
            master.stop()


def _wait(
    proc: subprocess.Popen[bytes] | None,
    ready: Callable[[], bool],
    stop: Callable[[], None],
    what: str,
) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)  # another process's state: polled, against a deadline
    stop()
    raise RuntimeError(f"{what} did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


#: Broker name, as the tables give it -> how to start one (``pin``) -> the program it needs.
BROKERS: dict[str, tuple[Callable[[bool], BrokerProcess], str]] = {
    "Redis": (RedisProcess.start, "redis-server"),
    "Redis Cluster": (RedisClusterProcess.start, "redis-server"),
    "NATS": (NatsProcess.start, "nats-server"),
}


def missing_programs(brokers: Sequence[str]) -> dict[str, str]:
    """Broker -> what is missing to start it, for those of ``brokers`` that cannot be."""
    missing = {}
    for name in brokers:
        program = BROKERS[name][1]
        found = nats_program() if program == "nats-server" else shutil.which(program)
        if found is None or (name == "Redis Cluster" and shutil.which("redis-cli") is None):
            missing[name] = program
    return missing


def broker_versions(brokers: Sequence[str]) -> str:
    """The versions of the clients and servers of ``brokers``, for a report."""
    from .report import _version as dist

    parts = []
    if any(b.startswith("Redis") for b in brokers):
        parts.append(f"redis-py {dist('redis')}, redis-server {RedisProcess.version()}")
    if "NATS" in brokers:
        parts.append(f"nats-py {dist('nats-py')}, nats-server {NatsProcess.version()}")
    return ", ".join(parts)


class Watched:
    """Servers as the load generator measures them, with their broker: CPU time is all
    of theirs (the broker is not the machine's other load), and each reading of the
    broker's part is kept, to tell it apart afterwards (``broker_share``)."""

    def __init__(self, servers: Sequence[ServerProcess], broker: BrokerProcess | None) -> None:
        self.servers = list(servers)
        self.broker = broker
        self.port = self.servers[0].port
        self.readings: list[tuple[float, float]] = []  # (wall clock, broker CPU seconds)

    def cpu_seconds(self) -> float:
        broker = self.broker.cpu_seconds() if self.broker is not None else 0.0
        self.readings.append((time.perf_counter(), broker))
        return sum(s.cpu_seconds() for s in self.servers) + broker

    def rss_bytes(self) -> int:
        return sum(s.rss_bytes() for s in self.servers)

    def broker_share(self) -> float | None:
        """The broker's share of a core between the first two readings (the measured
        time), None without a broker."""
        if self.broker is None or len(self.readings) < 2:
            return None
        (wall0, cpu0), (wall1, cpu1) = self.readings[:2]
        return (cpu1 - cpu0) / max(1e-9, wall1 - wall0)
