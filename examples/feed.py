"""A feed that survives a reconnect: channel history (docs/history.md) and a page on the
browser client that shows every item once, across dropped connections and reloads.

Run:  granian --interface rsgi examples.feed:app
Open: http://127.0.0.1:8000/, then cut the page's connection (the browser's developer
      tools, offline) or reload the page while items go by: nothing goes missing. After
      a server restart (in-memory history: a new epoch) the page says it could not
      recover and reloads the latest items.

The server publishes a numbered item, ``{"n": n, "at": <UTC time>}``, to the channel
``feed`` every half second (one ticker per worker). ``FEED_TICK`` sets the period in
seconds; ``FEED_TICK=0`` switches the ticker off. Clients may publish to ``feed`` too
(and only there), with the Python client for instance::

    async with Client("ws://127.0.0.1:8000/rpc") as client:
        await client.publish("feed", {"n": 1000})

Protocol, on ws://host/rpc: rpc.subscribe / rpc.history / rpc.publish on ``feed``
(docs/protocol.md, "History and recovery"); each rpc.message carries ``offset`` and
``epoch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from gobstopper import (
    RPC,
    BrokerUnavailable,
    Gobstopper,
    HTMLResponse,
    State,
    WebSocket,
    serve_client_js,
)

logger = logging.getLogger("examples.feed")


def tick_period(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between two items of the ticker (``FEED_TICK``, default 0.5); 0: none.

    Raises:
        ValueError: not a number of seconds, or negative.
    """
    raw = environ.get("FEED_TICK", "0.5")
    try:
        period = float(raw)
    except ValueError:
        period = -1.0
    if not period >= 0:  # negative, or NaN
        raise ValueError(f"FEED_TICK must be a number of seconds, 0 or more: {raw!r}")
    return period


TICK = tick_period()

app = Gobstopper()


def may_publish(state: State, channel: str) -> bool:
    """Clients may publish to the feed, and nowhere else."""
    return channel == "feed"


rpc = RPC(app.manager, client_publish=may_publish)
rpc.keep_history("feed", size=1000, ttl=600)  # the last 1000 items, 10 minutes each
serve_client_js(app)  # the browser client, at /gobstopper.js
ticker: asyncio.Task[None] | None = None


async def tick(period: float) -> None:
    """Publish item 1, 2, 3, ... to ``feed``, one every ``period`` seconds."""
    n = 0
    while True:
        n += 1
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        try:
            await rpc.publish("feed", {"n": n, "at": at})
        except BrokerUnavailable:  # Redis away: this item went nowhere, the next may go
            logger.warning("item %d not published: the broker is unavailable", n)
        await asyncio.sleep(period)


@app.on_startup
async def start_ticker() -> None:
    global ticker
    if TICK > 0:
        ticker = asyncio.get_running_loop().create_task(tick(TICK))


@app.on_shutdown
async def stop_ticker() -> None:
    if ticker is not None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)


# The page: plain HTML and JavaScript, no build step, nothing fetched from elsewhere.
PAGE = (Path(__file__).parent / "feed.html").read_text(encoding="utf-8")


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)
