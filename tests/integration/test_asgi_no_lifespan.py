"""``granian --interface asginl`` (ASGI without lifespan): the start-up hooks run on the
first request, once, with a warning in the log; the shutdown hooks do not run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from websockets.asyncio.client import connect

from .helpers import WAIT, http_request
from .servers import granian_command, start

TARGET = "tests.apps.core:app"
WARNING = "the server sent no ASGI lifespan (granian --interface asginl"


async def test_asginl_runs_the_startup_on_the_first_request(tmp_path: Path) -> None:
    marker = tmp_path / "shutdown.txt"
    server = start(
        TARGET,
        "asgi",
        {"CORE_APP_SHUTDOWN_FILE": str(marker)},
        command=granian_command(TARGET, "asginl", 0),
    )
    try:
        # Several first requests at once: all wait for the one start-up.
        answers = await asyncio.gather(
            *(http_request(server.port, "GET", "/health") for _ in range(5))
        )
        assert [a.json()["started"] for a in answers] == [["startup"]] * 5
        async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "hi"
        health = await http_request(server.port, "GET", "/health")
        assert health.json()["started"] == ["startup"]
    finally:
        code = server.stop()
    assert code == 0
    log = server.log()
    assert log.count(WARNING) == 1, log
    assert "shutdown hooks will NOT run" in log
    # As the warning says: without a lifespan nothing tells the app the server stops.
    assert not marker.exists()


async def test_asgi_with_lifespan_gives_no_warning() -> None:
    server = start(TARGET, "asgi")
    try:
        health = await http_request(server.port, "GET", "/health")
        assert health.json()["started"] == ["startup"]
    finally:
        server.stop()
    assert WARNING not in server.log()


async def test_the_feed_examples_ticker_starts_under_asginl() -> None:
    """The ticker an on_startup hook starts runs once the first client has come."""
    from gobstopper.client import Client

    target = "examples.feed:app"
    server = start(
        target, "asgi", {"FEED_TICK": "0.1"}, command=granian_command(target, "asginl", 0)
    )
    try:
        async with Client(f"ws://127.0.0.1:{server.port}/rpc", timeout=WAIT) as client:
            feed = await client.subscribe("feed")
            ticks = [await feed.get(WAIT) for _ in range(2)]
            assert ticks[1].data["n"] == ticks[0].data["n"] + 1
    finally:
        server.stop()
    assert WARNING in server.log()
