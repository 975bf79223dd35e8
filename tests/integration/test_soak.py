"""A bounded soak: thousands of connects, joins, broadcasts, closes and abrupt drops
against one server; afterwards it holds no connection, room, task or queue, and its
memory is back near where it was after a warm-up of the same traffic.

``GOBSTOPPER_SOAK_SECONDS`` sets its length per interface (default 25).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .helpers import stats, wait_stats
from .servers import Server, start

SOAK_SECONDS = float(os.environ.get("GOBSTOPPER_SOAK_SECONDS", "25"))
CONCURRENCY = 40
MiB = 1024 * 1024


async def settled(server: Server, baseline_tasks: int, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until the server has released everything it held."""
    return await wait_stats(
        server,
        lambda data: (
            data["connections"] == 0
            and data["rooms"] == {}
            and data["open_websockets"] == 0
            and data["queued_messages"] == 0
            and data["limiter"] == 0
            and data["metrics_open"] == 0
            and data["tasks"] <= baseline_tasks
        ),
        timeout,
    )


async def one_client(server: Server, rng: random.Random, n: int) -> str:
    """Connect, join, maybe broadcast and read, then leave politely or drop."""
    room = f"soak-{rng.randrange(8)}"
    try:
        ws = await connect(f"{server.ws}/ws/room/{room}?id=c{n}", open_timeout=10)
    except (OSError, asyncio.TimeoutError):
        return "refused"
    try:
        await asyncio.wait_for(ws.recv(), 10)  # joined
        commands = 0
        if rng.random() < 0.5:
            await ws.send(json.dumps({"op": "join", "room": f"extra-{rng.randrange(4)}"}))
            commands += 1
        if rng.random() < 0.5:
            data = "x" * rng.randrange(1, 2000)
            await ws.send(json.dumps({"op": "room", "room": room, "data": data}))
            commands += 1
        if rng.random() < 0.7:
            # Wait for the answers (other members' broadcasts may come in between).
            while commands:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, str) and message.startswith('{"done"'):
                    commands -= 1
    except (ConnectionClosed, asyncio.TimeoutError):
        pass
    if rng.random() < 0.3:
        ws.transport.abort()  # gone without a close frame
        return "dropped"
    await ws.close()
    return "closed"


async def traffic(server: Server, seconds: float, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        batch = [one_client(server, random.Random(rng.random()), n + i) for i in range(CONCURRENCY)]
        n += CONCURRENCY
        for outcome in await asyncio.gather(*batch):
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@pytest.mark.timeout(SOAK_SECONDS + 120)
@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_soak_leaves_nothing_behind(interface: str) -> None:
    server = start("tests.apps.rooms:app", interface)
    try:
        idle = await stats(server)
        await traffic(server, min(5.0, SOAK_SECONDS / 4), seed=1)  # warm-up
        warm = await settled(server, idle["tasks"])
        counts = await traffic(server, SOAK_SECONDS, seed=2)
        end = await settled(server, idle["tasks"])
    finally:
        server.stop()
    total = sum(counts.values())
    assert total >= 1000, counts
    assert counts.get("refused", 0) == 0, counts
    assert counts.get("dropped", 0) > 100 and counts.get("closed", 0) > 100, counts
    # Nothing the connections used is still referenced: the count of Python objects is
    # back where the warm-up left it (a connection kept alive costs dozens of objects).
    assert end["objects"] <= warm["objects"] + 500, (warm["objects"], end["objects"])
    # And memory is back near its level after the warm-up (allocators keep freed memory
    # for reuse, so "near" allows some slack).
    assert end["rss_bytes"] <= warm["rss_bytes"] + 16 * MiB, (warm["rss_bytes"], end["rss_bytes"])
    print(
        f"\nsoak: {total} connections in {SOAK_SECONDS:g}s ({counts}); RSS after warm-up "
        f"{warm['rss_bytes'] / MiB:.1f} MiB, at the end {end['rss_bytes'] / MiB:.1f} MiB"
    )
