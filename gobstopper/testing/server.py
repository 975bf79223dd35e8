"""An app under a real granian, on a free port of 127.0.0.1, for tests that must go over
the wire (close codes as RSGI sends them, backpressure, several workers, shutdown).

The server runs in a session (and process group) of its own, as one started from a
shell does; ``stop`` sends SIGINT, waits, then kills whatever is left of the group, so
no test leaves a process behind, even when the wait for it to start is interrupted
(Ctrl-C, a test's timeout). Its output goes to a temporary log file, shown when it fails
to start, removed when it stops cleanly and kept (its path logged) when it does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["INTERFACES", "LiveServer", "free_port", "granian_command", "start_server"]

logger = logging.getLogger(__name__)

#: The granian interfaces a ``LiveServer`` runs an app under.
INTERFACES = ("rsgi", "asgi")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A server process started by ``start_server``.

    Attributes:
        proc: the process.
        port: the port it listens on, on 127.0.0.1.
        interface: ``rsgi`` or ``asgi``.
        log_path: where its output goes.
        extra: whatever the test wants to keep with it.
        name: the server program (granian, unless started with another ``command``).
    """

    proc: subprocess.Popen[bytes]
    port: int
    interface: str
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)
    name: str = "granian"
    # Set when it failed to start: its log is kept whatever its exit code.
    _keep_log: bool = field(default=False, repr=False)
    # Its output, read before its log file is removed.
    _output: str | None = field(default=None, repr=False)

    @property
    def ws(self) -> str:
        """The WebSocket base URL, ``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        """The HTTP base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the server has written so far (all of it, once stopped)."""
        if self._output is not None:
            return self._output
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL if it does not exit in time; return the exit code.

        Whatever is left of the server's process group afterwards (a worker whose main
        process is gone) is killed too. On exit code 0 its log file is removed (``log()``
        still answers); otherwise it is kept and its path logged. Calling it again is
        harmless.
        """
        if self._output is not None:
            return int(self.proc.returncode)  # stopped and cleaned up already
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # start_server() gives every server a session (and process group) of its own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = int(self.proc.returncode)
        if code == 0 and not self._keep_log:
            self._output = self.log()
            self.log_path.unlink(missing_ok=True)
        elif not self._keep_log:  # a failed start says where its log is itself
            logger.warning("%s exited with %s; its output is in %s", self.name, code, self.log_path)
        return code


def granian_command(target: str, interface: str, port: int, workers: int = 1) -> list[str]:
    """The command line of granian serving ``target`` on 127.0.0.1:``port``."""
    return [
        *(sys.executable, "-m", "granian", "--interface", interface),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        *("--no-access-log", target),
    ]


def start_server(
    target: str,
    interface: str = "rsgi",
    env: dict[str, str] | None = None,
    *,
    workers: int = 1,
    command: list[str] | None = None,
    wait: bool = True,
    timeout: float = 20.0,
    cwd: Path | str | None = None,
    port: int | None = None,
) -> LiveServer:
    """Start ``target`` (``"package.module:app"``) under granian and wait until it
    accepts connections. Call ``stop()`` on the result when done (the pytest fixtures
    do).

    Args:
        target: the app's import string, importable from ``cwd``.
        interface: ``rsgi`` or ``asgi``.
        env: variables added to this process's environment for the server.
        workers: granian's worker processes.
        command: another command line instead of granian's (``{port}`` is filled in).
        wait: wait until it listens (else return at once).
        timeout: seconds to wait for it to listen.
        cwd: the server's working directory (default: this process's).
        port: the port (default: a free one).

    Raises:
        ValueError: an unknown interface.
        RuntimeError: it exited, or did not listen within ``timeout`` (with its output).
    """
    if command is None and interface not in INTERFACES:
        raise ValueError(f"unknown interface {interface!r}: choose from {INTERFACES}")
    port = port or free_port()
    fd, name = tempfile.mkstemp(prefix=f"gobstopper-{interface}-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    argv = command or granian_command(target, interface, port, workers)
    argv = [a.replace("{port}", str(port)) for a in argv]
    if command is None or "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    with log_path.open("wb") as log:
        # Its own process group, as a server started from a shell has: tests can then
        # signal the whole group the way a terminal's Ctrl-C does.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(proc, port, interface, log_path)
    if wait:
        try:
            wait_listening(server, timeout)
        except BaseException:
            # Interrupted (Ctrl-C, a test's timeout) or failed: nothing left running.
            server.stop()
            raise
    return server


def wait_listening(server: LiveServer, timeout: float) -> None:
    """Wait until ``server`` accepts TCP connections.

    Raises:
        RuntimeError: it exited, or did not listen in time (it is stopped then, its log
            kept: the message says where).
    """
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
        server._keep_log = True
        server.stop()  # its process group too: a worker may outlive it
        raise RuntimeError(
            f"server exited with {server.proc.returncode} (log: {server.log_path}):\n"
            + server.log()
        )
    server._keep_log = True
    server.stop()
    raise RuntimeError(
        f"server did not listen within {timeout}s (log: {server.log_path}):\n{server.log()}"
    )
