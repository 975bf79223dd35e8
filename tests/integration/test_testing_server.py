"""The test kit's real-server fixtures (``gobstopper_server``, ``gobstopper_serve``):
the app under granian on a free port, over the wire, and nothing left running after."""

from __future__ import annotations

import os
import re
import socket
import sys
import textwrap
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gobstopper.testing import AsyncTestClient, LiveServer, start_server

from .helpers import http_request

ROOT = Path(__file__).resolve().parents[2]
RECOMMENDED_CONFIG = """
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""


@pytest.fixture
def gobstopper_target() -> str:
    return "examples.echo:app"


@pytest.fixture
def gobstopper_app() -> object:
    from examples.echo import app

    return app


@pytest.mark.parametrize("gobstopper_server", ["rsgi", "asgi"], indirect=True)
async def test_the_server_fixture_serves_over_the_wire(gobstopper_server: LiveServer) -> None:
    assert gobstopper_server.ws == f"ws://127.0.0.1:{gobstopper_server.port}"
    async with connect(f"{gobstopper_server.ws}/ws/echo") as ws:
        await ws.send("over the wire")
        assert await ws.recv() == "over the wire"
    assert f"--interface {gobstopper_server.interface}" in " ".join(gobstopper_server.proc.args)


def test_rsgi_is_the_default(gobstopper_server: LiveServer) -> None:
    assert gobstopper_server.interface == "rsgi"


async def test_serve_starts_more_and_their_urls_answer(gobstopper_serve: object) -> None:
    serve = gobstopper_serve
    assert callable(serve)
    first, second = serve("examples.chat:app"), serve("examples.chat:app", "asgi")
    assert first.port != second.port
    for server in (first, second):
        health = await http_request(server.port, "GET", "/health")
        assert health.status == 200 and health.json()["status"] == "ok"


def test_a_bad_interface_or_target_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown interface 'wsgi'"):
        start_server("examples.echo:app", "wsgi")
    with pytest.raises(RuntimeError, match="server exited"):
        start_server("examples.no_such_module:app", cwd=ROOT)


def test_the_fixtures_stop_the_whole_process_group(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's test run, as a subprocess: its server is up during the test and gone,
    with its process group, after it."""
    pytester.makepyfile(
        myapp=textwrap.dedent(
            """
            from gobstopper import Gobstopper, WebSocket

            app = Gobstopper(environ={})


            @app.websocket("/ws/hi")
            async def hi(ws: WebSocket) -> None:
                await ws.accept()
                await ws.send_text("hi")
            """
        ),
        test_user=textwrap.dedent(
            """
            import pytest
            from websockets.sync.client import connect


            @pytest.fixture
            def gobstopper_target():
                return "myapp:app"


            def test_over_the_wire(gobstopper_server):
                with open("pid", "w") as f:
                    f.write(str(gobstopper_server.proc.pid))
                with connect(gobstopper_server.ws + "/ws/hi") as ws:
                    assert ws.recv(timeout=10) == "hi"


            def test_without_an_app(gobstopper_client):
                pass
            """
        ),
    )
    # The configuration docs/testing.md recommends: no warning with -W error.
    pytester.makepyprojecttoml(RECOMMENDED_CONFIG)
    args = ["-p", "no:cacheprovider", "-W", "error"]
    if not any(ep.value == "gobstopper.testing.plugin" for ep in entry_points(group="pytest11")):
        args += ["-p", "gobstopper.testing.plugin"]  # an install older than its entry point
    monkeypatch.setenv("PYTHONPATH", f"{pytester.path}{os.pathsep}{ROOT}")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named gobstopper_app*"])
    pid = int((pytester.path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process of that group is left


# A server that never listens: it starts a worker in its own process group, writes both
# process ids, then waits (or exits at once with code 3, given "exit").
NEVER_LISTENS = """
import os, signal, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {worker.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
if sys.argv[2] == "exit":
    sys.exit(3)
signal.pause()
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The processes of ``pids`` still running after ``timeout`` (none: all ended)."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling /proc: there is no event for another process's end
    return [p for p in pids if alive(p)]


def test_an_interrupted_start_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tmp_path / "pids"

    def interrupted(*args: object, **kwargs: object) -> socket.socket:
        if ids.exists():
            raise KeyboardInterrupt  # Ctrl-C while start_server waits
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", interrupted)
    command = [sys.executable, "-c", NEVER_LISTENS, str(ids), "wait"]
    with pytest.raises(KeyboardInterrupt):
        start_server("unused:app", command=command, timeout=30)
    assert wait_gone([int(p) for p in ids.read_text().split()]) == []


def test_a_server_that_exits_at_start_takes_its_group_along(tmp_path: Path) -> None:
    ids = tmp_path / "pids"
    command = [sys.executable, "-c", NEVER_LISTENS, str(ids), "exit"]
    with pytest.raises(RuntimeError, match=r"server exited with 3 \(log: ") as failed:
        start_server("unused:app", command=command, timeout=30)
    assert wait_gone([int(p) for p in ids.read_text().split()]) == []
    named = re.search(r"\(log: (\S+)\)", str(failed.value))
    assert named is not None
    log = Path(named[1])
    assert log.exists()  # kept, for the failure
    log.unlink()


def test_a_clean_stop_removes_the_log_file() -> None:
    server = start_server("examples.echo:app", cwd=ROOT)
    assert server.stop() == 0
    assert not server.log_path.exists()
    assert server.stop() == 0  # again: harmless


PATH_APP = """
from gobstopper import Gobstopper, Request

app = Gobstopper(environ={})


@app.get("/hello/<name>")
async def hello(request: Request, name: str) -> dict[str, str]:
    return {"name": name}
"""


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_an_encoded_path_routes_in_process_as_under_granian(
    tmp_path: Path, interface: str
) -> None:
    (tmp_path / "pathapp.py").write_text(PATH_APP)
    paths = ["/hello/a%20b", "/hello/caf%C3%A9"]
    server = start_server("pathapp:app", interface, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    try:
        wire = [(await http_request(server.port, "GET", p)).json() for p in paths]
    finally:
        server.stop()
    namespace: dict[str, Any] = {}
    exec(compile(PATH_APP, "pathapp.py", "exec"), namespace)
    async with AsyncTestClient(namespace["app"]) as client:
        in_process = [(await client.get(p)).json() for p in paths]
    assert in_process == wire == [{"name": "a b"}, {"name": "café"}]
