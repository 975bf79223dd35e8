"""Real nats-server processes for the tests: one server, or a cluster of three, each on free
ports of 127.0.0.1 with JetStream, stopped afterwards.

Readiness is read from each server's HTTP monitoring port rather than guessed with sleeps:
``/healthz`` answers 503 ("JetStream has not established contact with a meta leader") until
JetStream can serve requests, ``/routez`` lists the routes by the remote server's id, and
``/varz`` gives each server's own id (a new one every time the process starts, so a route
to a restarted server is told apart from a stale one).

Without nats-server on the machine the tests that need it are skipped with the reason,
except in CI (``CI`` set), where they fail: ``.ci/run`` installs it.
"""

from __future__ import annotations

import functools
import http.client
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .redis_server import IN_CI
from .servers import free_port

# Debian's package installs the program in /usr/sbin, which a user's PATH often lacks.
FALLBACK_PROGRAM = Path("/usr/sbin/nats-server")
POLL = 0.05  # the pause between two readiness checks


def require_nats() -> str:
    """The nats-server program; skip (fail in CI) without it or without nats-py."""
    path = shutil.which("nats-server")
    if path is None and FALLBACK_PROGRAM.is_file():
        path = str(FALLBACK_PROGRAM)
    try:
        import nats  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        reason = (
            "nats-server or the nats client is missing "
            "(apt-get install nats-server; pip install nats-py)"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def http_get(port: int, path: str) -> tuple[int, Any]:
    """GET ``path`` from a monitoring port: the status and the decoded JSON body (``None``
    when the body is not JSON); status 0 when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
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


class NatsServer:
    """One nats-server process with JetStream; ``restart()`` brings it back on the same
    ports and store directory, so what JetStream stored survives."""

    def __init__(
        self,
        program: str,
        port: int | None = None,
        *,
        name: str = "gobstopper",
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: tuple[int, ...] = (),
    ) -> None:
        self.program = program
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.name = name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = routes  # the cluster ports of the other servers
        self.dir = Path(tempfile.mkdtemp(prefix="gobstopper-nats-"))
        self.store_dir = self.dir / "store"
        self.log_path = self.dir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [
            *(self.program, "-a", "127.0.0.1", "-p", str(self.port)),
            *("-m", str(self.monitor_port), "--name", self.name),
            *("-js", "-sd", str(self.store_dir)),
        ]
        if self.cluster_port is not None:
            routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.routes)
            argv += [
                *("--cluster", f"nats://127.0.0.1:{self.cluster_port}"),
                *("--cluster_name", self.cluster_name or "gobstopper", "--routes", routes),
            ]
        return argv

    def launch(self) -> None:
        """Start the process without waiting for it (a cluster starts all its servers
        before any of them can elect a JetStream meta leader)."""
        if self.running():
            raise RuntimeError(f"nats-server {self.name} is already running")
        # Appended to, so a restarted server's log still shows why the last one stopped.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it answers clients with JetStream ready."""
        self.launch()
        self.wait_ready(time.monotonic() + timeout)

    def wait_ready(self, deadline: float) -> None:
        """Wait until it greets clients and its JetStream is healthy; stop it and raise with
        its log if it exits or the deadline passes."""
        wait_for(self, deadline, self.ready, "did not become ready")

    def ready(self) -> bool:
        return self.greets() and http_get(self.monitor_port, "/healthz")[0] == 200

    def greets(self) -> bool:
        """Whether a client connection gets the server's ``INFO {...}`` greeting."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                return s.makefile("rb").readline().startswith(b"INFO ")
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def server_id(self) -> str | None:
        """The id this process drew at start (``/varz``), or ``None`` if it does not answer."""
        status, varz = http_get(self.monitor_port, "/varz")
        return str(varz["server_id"]) if status == 200 and varz else None

    def route_ids(self) -> set[str] | None:
        """The ids of the servers it is routed to (``/routez``), or ``None`` if it does not
        answer. A set: two servers dialling each other at once briefly hold a duplicate
        route, counted in ``num_routes`` until one side closes it."""
        status, routez = http_get(self.monitor_port, "/routez")
        if status != 200 or routez is None:
            return None
        return {str(route["remote_id"]) for route in routez.get("routes") or []}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """Stop it the hard way, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self, timeout: float = 10.0) -> None:
        self.kill()
        self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(server: NatsServer, deadline: float, check: Callable[[], bool], failure: str) -> None:
    """Poll ``check`` until the deadline, failing at once (with the log) if ``server``
    exits; on timeout stop ``server`` and raise with its log."""
    while True:
        if check():
            return
        if server.proc is None:
            raise RuntimeError(f"nats-server {server.name} was not started")
        try:
            server.proc.wait(POLL)  # the pause between attempts, and a check it lives
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue
            server.stop()
            raise RuntimeError(f"nats-server {server.name} {failure}:\n{server.log()}") from None
        raise RuntimeError(
            f"nats-server {server.name} exited with {server.proc.returncode}:\n{server.log()}"
        )


class NatsCluster:
    """Three nats-servers routed to each other as one NATS cluster, JetStream clustered over
    the three (each with its own store directory); a server restarts on the same ports."""

    SIZE = 3

    def __init__(self, program: str, name: str = "gobstopper") -> None:
        cluster_ports = [free_port() for _ in range(self.SIZE)]
        self.servers = [
            NatsServer(
                program,
                name=f"{name}-{i}",
                cluster_name=name,
                cluster_port=cluster_ports[i],
                routes=tuple(p for j, p in enumerate(cluster_ports) if j != i),
            )
            for i in range(self.SIZE)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        """All the servers comma-separated, as one setting holds a server list (nats-py's
        ``connect`` wants the list itself: ``urls``)."""
        return ",".join(self.urls)

    def start(self, i: int | None = None, timeout: float = 20.0) -> None:
        """Start every server (or server ``i``) and wait until the whole cluster is formed:
        each server routed to the other two (their current processes) and JetStream's meta
        group with a leader every server knows."""
        deadline = time.monotonic() + timeout
        starting = self.servers if i is None else [self.servers[i]]
        for server in starting:
            server.launch()
        for server in starting:
            server.wait_ready(deadline)
        ids = {server.name: server.server_id() for server in self.servers}
        for server in self.servers:
            others = {v for k, v in ids.items() if k != server.name}
            wait_for(
                server,
                deadline,
                functools.partial(self.formed, server, others),
                "did not route to the other servers or see a JetStream meta leader",
            )

    @staticmethod
    def formed(server: NatsServer, others: set[str | None]) -> bool:
        if server.route_ids() != others:
            return False
        status, jsz = http_get(server.monitor_port, "/jsz")
        if status != 200 or jsz is None:
            return False
        meta = jsz.get("meta_cluster") or {}
        return bool(meta.get("leader")) and meta.get("cluster_size") == len(others) + 1

    def restart(self, i: int, timeout: float = 20.0) -> None:
        self.kill(i)
        self.start(i, timeout)

    def kill(self, i: int) -> None:
        self.servers[i].kill()

    def stop(self, i: int) -> None:
        self.servers[i].stop()

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()


def nats_fixture(scope: str = "function") -> object:
    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def fixture() -> Iterator[NatsServer]:
        server = NatsServer(require_nats())
        try:
            server.start()
            yield server
        finally:
            server.cleanup()

    return fixture


def nats_cluster_fixture(scope: str = "function") -> object:
    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def fixture() -> Iterator[NatsCluster]:
        cluster = NatsCluster(require_nats())
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.cleanup()

    return fixture
