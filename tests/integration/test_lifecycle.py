"""Start-up, shutdown and configuration errors under real granian processes."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from .helpers import http_request
from .servers import start


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MAX_WS_MESSAGE_BYTES": "lots"}, "MAX_WS_MESSAGE_BYTES='lots' is not an integer"),
        ({"WS_SEND_CHUNK_BYTES": "0"}, "WS_SEND_CHUNK_BYTES='0' must be a positive integer"),
        (
            {"MAX_WS_MESSAGE_BYTES": "1000", "WS_SEND_CHUNK_BYTES": "4096"},
            "WS_SEND_CHUNK_BYTES=4096 is larger than MAX_WS_MESSAGE_BYTES=1000",
        ),
    ],
)
def test_bad_environment_stops_start_up_naming_the_variable(
    interface: str, env: dict[str, str], needle: str
) -> None:
    server = start("examples.echo:app", interface, env, wait=False)
    try:
        code = server.proc.wait(20)
    finally:
        server.stop()
    assert code != 0
    assert "ConfigError" in server.log() and needle in server.log()


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_startup_and_shutdown_hooks_run(interface: str, tmp_path: Path) -> None:
    marker = tmp_path / "shutdown.txt"
    server = start("tests.apps.core:app", interface, {"CORE_APP_SHUTDOWN_FILE": str(marker)})
    try:
        health = await http_request(server.port, "GET", "/health")
        assert health.json()["started"] == ["startup"]
        assert not marker.exists()
    finally:
        code = server.stop()
    assert code == 0
    assert marker.read_text() == "shutdown ran"


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_env_limit_applies_to_the_running_server(interface: str) -> None:
    server = start(
        "tests.apps.core:app",
        interface,
        {"MAX_WS_MESSAGE_BYTES": "1000", "WS_SEND_CHUNK_BYTES": "500"},
    )
    try:
        async with connect(f"{server.ws}/ws/size") as ws:
            await ws.send("send 1001")
            assert await ws.recv() == "too big: 1001 > 1000"
            await ws.send("a" * 1000)
            assert await ws.recv() == "received 1000"
    finally:
        server.stop()


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_shutdown_with_open_connections_is_prompt_and_runs_hooks(
    interface: str, tmp_path: Path
) -> None:
    marker = tmp_path / "shutdown.txt"
    server = start("tests.apps.core:app", interface, {"CORE_APP_SHUTDOWN_FILE": str(marker)})
    try:
        clients = [await connect(f"{server.ws}/ws/echo") for _ in range(3)]
        for ws in clients:
            await ws.send("x")
            assert await ws.recv() == "x"
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(server.proc.wait, 15)
        elapsed = time.monotonic() - started
        for ws in clients:
            # Every client gets a close frame, never a dropped TCP connection (1006).
            await asyncio.wait_for(ws.wait_closed(), 5)
            if interface == "asgi":
                assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
            else:
                assert ws.close_code == 1005  # RSGI: a close frame without a code
    finally:
        server.stop()
    assert code == 0
    assert elapsed < 10
    assert marker.read_text() == "shutdown ran"


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_sigterm_with_100_clients_closes_every_one_in_time(
    interface: str, tmp_path: Path
) -> None:
    grace = 2.0
    marker = tmp_path / "shutdown.txt"
    env = {"CORE_APP_SHUTDOWN_FILE": str(marker), "WS_SHUTDOWN_GRACE": str(grace)}
    server = start("tests.apps.core:app", interface, env)
    clients = []
    try:
        for _ in range(100):
            clients.append(await connect(f"{server.ws}/ws/echo"))
        await asyncio.gather(*(ws.send("x") for ws in clients))
        assert [await ws.recv() for ws in clients] == ["x"] * 100
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, grace + 10)
        elapsed = time.monotonic() - started
        await asyncio.gather(*(asyncio.wait_for(ws.wait_closed(), 5) for ws in clients))
        # A close frame for every client: never a dropped TCP connection (1006).
        codes = {ws.close_code for ws in clients}
        assert codes == ({1001} if interface == "asgi" else {1005}), codes
        assert all(ws.protocol.close_rcvd is not None for ws in clients)
    finally:
        server.stop()
    assert code == 0
    assert elapsed < grace + 3
    assert marker.read_text() == "shutdown ran"
