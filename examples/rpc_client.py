"""The Python client of ``examples.rpc``: calls, and the connection's status as it goes.

Run:  granian --interface rsgi examples.rpc:app
Then: python -m examples.rpc_client ws://127.0.0.1:8000/rpc

It prints every status change (connecting, open, reconnecting, closed), calls ``add``
once a second (``--calls N`` calls, default 3), and goes on across a server restart:
stop the server and start it again meanwhile, and the calls wait for the new
connection (a call in flight when the server stops is reported lost: it may or may not
have run, so it is not sent again). With no server it fails after ``--timeout`` seconds
and says why (the address, the attempts, the last error). Needs ``pip install -e '.[client]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gobstopper.client import Client, ClientTimeout, Disconnect, Status


def show_status(status: Status, close_reason: tuple[int, str] | None) -> None:
    print(f"status: {status.value}", flush=True)


def show_open(info: Any) -> None:
    print(f"open as {info['id']}", flush=True)


def show_close(event: Disconnect) -> None:
    print(f"disconnected: {event.cause}; attempt {event.attempt}, next in {event.delay:.2f}s")


async def main(url: str, calls: int, timeout: float) -> int:
    client = Client(
        url, timeout=timeout, on_status=show_status, on_open=show_open, on_close=show_close
    )
    try:
        async with client:
            for n in range(calls):
                if n:
                    await asyncio.sleep(1)  # a pace for people to watch, not a wait
                try:
                    print(f"add({n}, 1) = {await client.call('add', n, 1)}", flush=True)
                except ConnectionError as exc:  # dropped before the answer: go on
                    print(f"add({n}, 1) lost: {exc}", flush=True)
    except ClientTimeout as exc:  # ConnectTimeout too: no server within the timeout
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8000/rpc")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.calls, args.timeout)))
