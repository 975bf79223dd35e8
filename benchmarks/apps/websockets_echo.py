"""Echo with the ``websockets`` library's own asyncio server, a peer for the echo benchmark.

    python benchmarks/apps/websockets_echo.py PORT

Listens on 127.0.0.1, one process, uvloop when installed, no compression.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def echo(ws: ServerConnection) -> None:
    if ws.request is None or ws.request.path != "/ws/echo":
        await ws.close(1008)
        return
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def serve_forever(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        await stop


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: websockets_echo.py PORT", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_forever(int(argv[0])))
    else:
        uvloop.run(serve_forever(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
