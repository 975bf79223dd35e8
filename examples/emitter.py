"""Publishing into a running cluster from another process: a script, a Django or FastAPI
view, a Celery task. It needs the servers' broker URL, and neither granian nor the app.

Start the servers on a shared broker (Redis here; NATS or a Redis Cluster work the same):

    export GOBSTOPPER_BROKER_URL=redis://127.0.0.1:6379/0
    .venv/bin/granian --interface rsgi --workers 2 --respawn-failed-workers examples.feed:app

then, from anywhere that reaches the broker (the same variable set):

    .venv/bin/python -m examples.emitter "price 42"

Every client of the feed, on every worker, gets the publication once.
"""

from __future__ import annotations

import sys

from gobstopper.emitter import SyncEmitter


def announce(text: str, url: str | None = None) -> int | None:
    """Publish ``text`` to the feed's channel (which keeps history): its offset."""
    with SyncEmitter(url) as emitter:  # url None: GOBSTOPPER_BROKER_URL
        position = emitter.publish("feed", {"text": text})
        emitter.emit("announced", {"text": text})  # a named event for everyone too
    return None if position is None else position.offset


if __name__ == "__main__":
    offset = announce(" ".join(sys.argv[1:]) or "hello from outside")
    print("published" if offset is None else f"published at offset {offset}")
