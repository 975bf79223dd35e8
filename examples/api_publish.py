"""Publish to WebSocket clients from any process, over HTTP (docs/http-api.md).

Run (the key is any secret of 16 characters or more)::

    export GOBSTOPPER_API_KEY=$(openssl rand -hex 32)
    granian --interface rsgi examples.api_publish:app

Clients connect to ``ws://127.0.0.1:8000/rpc?user=ann`` and subscribe to ``news`` and to
their own channel, ``user.ann`` (``rpc.subscribe``; other channels are refused). Then a
cron job, a web backend or a shell publishes to them::

    curl -H "Authorization: Bearer $GOBSTOPPER_API_KEY" \\
         -d '{"command": "publish", "channel": "news", "data": {"title": "hello"}}' \\
         http://127.0.0.1:8000/api

or, with this module as the publisher (its `publish` uses only `urllib` from the
standard library, so it can be copied into any program; run here, the module also
builds the app, which needs ``GOBSTOPPER_API_KEY`` set)::

    python -m examples.api_publish news '{"title": "hello"}'
    python -m examples.api_publish user.ann '"just for you"'

With ``GOBSTOPPER_BROKER_URL`` naming a broker and several workers or hosts, whichever
of them takes the request, every subscriber gets the message.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
from typing import Any

from gobstopper import RPC, Gobstopper, State, WebSocket

app = Gobstopper()
if app.api is None:
    raise RuntimeError("set GOBSTOPPER_API_KEY (16 characters or more) to turn the API on")


def may_subscribe(state: State, channel: str) -> bool:
    """``news``, and the user's own channel."""
    return channel in ("news", f"user.{state.user}")


rpc = RPC(app.manager, can_subscribe=may_subscribe)


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    # A demo takes the name it is given; a real app authenticates (docs/security.md).
    ws.state.user = ws.query_params.get("user") or "anonymous"
    await rpc.serve(ws)


def publish(
    channel: str, data: Any, url: str = "http://127.0.0.1:8000/api", key: str | None = None
) -> dict[str, Any]:
    """POST a ``publish`` command; the answer, e.g. ``{"delivered": 1, "published": false}``.

    Raises:
        urllib.error.HTTPError: the API refused it (its body says why).
    """
    body = json.dumps({"command": "publish", "channel": channel, "data": data}).encode()
    request = urllib.request.Request(url, body, method="POST")
    request.add_header("Authorization", f"Bearer {key or os.environ['GOBSTOPPER_API_KEY']}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description="Publish to a channel through the HTTP API.")
    parser.add_argument("channel")
    parser.add_argument("data", help="the data, as JSON")
    parser.add_argument("--url", default="http://127.0.0.1:8000/api")
    args = parser.parse_args()
    print(json.dumps(publish(args.channel, json.loads(args.data), args.url)))


if __name__ == "__main__":
    main()
