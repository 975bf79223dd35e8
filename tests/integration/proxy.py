"""A TCP proxy on 127.0.0.1 whose connections a test can cut at will, as a network does.

Clients connect to the proxy's port; each connection is relayed to the server. ``cut()``
aborts every relayed connection at once (a reset on both sides, no close frame), so the
client sees its connection drop and the server sees its client vanish, while the proxy
keeps accepting new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator

__all__ = ["Proxy", "proxy"]


class Proxy:
    """A running proxy to ``127.0.0.1:target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.cuts = 0
        self._server: asyncio.AbstractServer | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.accepted = 0
        #: While set, new connections are reset at once: the network is down.
        self.down = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            _abort(writer)
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            _abort(writer)
            _abort(up_writer)

    def cut(self) -> int:
        """Abort every relayed connection now; how many there were."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            _abort(client)
            _abort(upstream)
        self._pairs.clear()
        self.cuts += 1
        return len(pairs)

    def go_down(self) -> None:
        """Cut every connection and refuse new ones until ``come_back()``."""
        self.down = True
        self.cut()

    def come_back(self) -> None:
        self.down = False

    @property
    def open(self) -> int:
        """Connections being relayed now."""
        return len(self._pairs)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0): what a dropped network looks like to the peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()


@contextlib.asynccontextmanager
async def proxy(target: int) -> AsyncIterator[Proxy]:
    """A proxy to ``target`` for the duration of the block."""
    p = Proxy(target)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
