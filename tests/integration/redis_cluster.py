"""A real Redis Cluster for the tests: three masters on free ports of 127.0.0.1.

Each master is a ``RedisServer`` with cluster mode on, its ``nodes.conf`` in its own
directory, no persistence and ``cluster-require-full-coverage no`` (the masters left
serve their slots while one is down). ``kill(i)`` and ``start(i)`` stop one master the
hard way and bring it back on the same port with its ``nodes.conf``: it rejoins with
its slots, empty. Without redis-server the tests that need it are skipped with the
reason, and fail in CI (``require_redis``).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from .redis_server import RedisServer, require_redis
from .servers import free_port

__all__ = ["RedisCluster", "cluster_fixture", "shared_cluster"]

#: How long the masters wait before they call a silent one failed (ms): short, so that a
#: killed master is noticed quickly.
NODE_TIMEOUT_MS = 500


class _ClusterNode(RedisServer):
    """One master: a redis-server with cluster mode on."""

    def __init__(self, program: str) -> None:
        super().__init__(program)
        self.options = (
            *("--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf")),
            # Its own bus port: the default (port + 10000) may be taken, or past 65535.
            *("--cluster-port", str(free_port())),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--cluster-require-full-coverage", "no"),
        )

    def command(self, *args: str) -> str:
        """One redis-cli command on this master, its output as text."""
        cli = shutil.which("redis-cli") or "redis-cli"
        out = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            check=True,
            timeout=10,
        )
        return out.stdout.decode()


class RedisCluster:
    """Three masters holding every slot, no replicas.

    Attributes:
        nodes: the masters, in the order of their slot ranges.
    """

    def __init__(self, program: str, masters: int = 3) -> None:
        self.nodes = [_ClusterNode(program) for _ in range(masters)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 20.0) -> None:
        """Start the masters, give each a third of the slots, wait for ``cluster_state:ok``;
        on any failure stop what was started."""
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is missing (it comes with redis-server)")
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            options = ("--cluster-replicas", "0", "--cluster-yes")
            subprocess.run(
                [cli, "--cluster", "create", *addresses, *options],
                capture_output=True,
                check=True,
                timeout=timeout,
            )
            self.wait_ok(timeout)
        except BaseException:
            self.cleanup()
            raise

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every master says ``cluster_state:ok`` and knows every other."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ok(node) for node in self.nodes):
                return
            time.sleep(0.05)  # another process's state: polled, against a deadline
        raise RuntimeError(f"the cluster did not come up within {timeout}s")

    def _ok(self, node: _ClusterNode) -> bool:
        try:
            info = node.command("cluster", "info")
            nodes = node.command("cluster", "nodes")
        except (subprocess.SubprocessError, OSError):
            return False
        healthy = [line for line in nodes.splitlines() if "fail" not in line.split()[2]]
        return "cluster_state:ok" in info and len(healthy) == len(self.nodes)

    def slot_owner(self, slot: int) -> int:
        """The index of the master that serves ``slot``."""
        for line in self.nodes[0].command("cluster", "nodes").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                first, _, last = part.partition("-")
                if first.isdigit() and int(first) <= slot <= int(last or first):
                    return next(i for i, n in enumerate(self.nodes) if n.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def keyslot(self, key: str) -> int:
        """The slot of ``key``, as Redis computes it (``CLUSTER KEYSLOT``)."""
        return int(self.nodes[0].command("cluster", "keyslot", key))

    def kill(self, index: int) -> None:
        """Stop one master the hard way, as a crash would."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 20.0) -> None:
        """Bring a killed master back on its port (its nodes.conf kept, its data gone)."""
        self.nodes[index].start()
        self.wait_ok(timeout)

    def alive(self, index: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.nodes[index].port), 0.5):
                return True
        except OSError:
            return False

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def cluster_fixture(scope: str = "module") -> object:
    """A pytest fixture: a started ``RedisCluster``, stopped afterwards."""

    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def fixture() -> Iterator[RedisCluster]:
        cluster = RedisCluster(require_redis())
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.cleanup()

    return fixture


_shared: RedisCluster | None = None


def shared_cluster() -> RedisCluster:
    """One cluster for every test that leaves it whole (no master killed), started on
    first use and stopped when the test run ends; tests keep apart by key prefix."""
    global _shared
    if _shared is None:
        cluster = RedisCluster(require_redis())
        cluster.start()
        atexit.register(cluster.cleanup)
        _shared = cluster
    return _shared
