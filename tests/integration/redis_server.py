"""A real redis-server for the tests, on a free port of 127.0.0.1, stopped afterwards.

Without redis-server on the machine the tests that need it are skipped with the reason,
except in CI (``CI`` set), where they fail: ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import free_port

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_redis() -> str:
    """The redis-server program; skip (fail in CI) without it or without redis-py."""
    path = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        reason = (
            "redis-server or the redis client is missing "
            "(apt-get install redis-server; pip install -e '.[redis]')"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class RedisServer:
    """One redis-server process; ``restart()`` brings it back on the same port."""

    def __init__(
        self, program: str, port: int | None = None, options: tuple[str, ...] = ()
    ) -> None:
        self.program = program
        self.options = options  # more arguments for redis-server
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gobstopper-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        argv = [
            *(self.program, "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.dir)),
            *("--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"),
            *self.options,
        ]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            try:
                self.proc.wait(0.05)  # the pause between attempts, and a check it lives
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

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

    def restart(self) -> None:
        self.kill()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_fixture(scope: str = "function") -> object:
    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def fixture() -> Iterator[RedisServer]:
        server = RedisServer(require_redis())
        server.start()
        try:
            yield server
        finally:
            server.cleanup()

    return fixture
