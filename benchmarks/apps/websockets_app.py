"""The ``websockets`` library's own asyncio server, a peer for the echo and fan-out
benchmarks.

    python benchmarks/apps/websockets_app.py PORT

Listens on 127.0.0.1, one process, uvloop when installed, no compression. ``/ws/echo``
sends each message back; ``/ws/recv`` joins one room and ``/ws/send`` broadcasts each
message to it with ``websockets.broadcast()``, the library's documented fan-out (it
skips, and logs, a member whose connection is too slow to take more).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

room: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    try:
        if path == "/ws/echo":
            async for message in ws:
                await ws.send(message)
        elif path == "/ws/recv":
            room.add(ws)
            try:
                await ws.wait_closed()
            finally:
                room.discard(ws)
        elif path == "/ws/send":
            async for message in ws:
                broadcast(room, message)
        else:
            await ws.close(1008)
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
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None):
        await stop


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: websockets_app.py PORT", file=sys.stderr)
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
