"""The room manager under real granian servers, with real clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .helpers import stats, wait_stats
from .servers import Server, server_fixture, start

rooms_server = server_fixture("tests.apps.rooms:app", "The rooms test app under granian.")


async def until_end(ws: ClientConnection) -> list[str]:
    """Every message up to the one that says "end"."""
    got = []
    while (msg := await asyncio.wait_for(ws.recv(), 20)) != "end":
        got.append(str(msg))
    return got


async def join(
    server: Server, room: str, conn_id: str | None = None, **kw: Any
) -> ClientConnection:
    query = "&".join(f"{k}={v}" for k, v in ({"id": conn_id} if conn_id else {}).items())
    ws = await connect(f"{server.ws}/ws/room/{room}?{query}", **kw)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["joined"] == room
    return ws


async def command(ws: ClientConnection, seen: list[Any] | None = None, **cmd: Any) -> int:
    """Send a command and wait for its acknowledgement; messages before it go to ``seen``."""
    await ws.send(json.dumps(cmd))
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        msg = json.loads(raw) if isinstance(raw, str) and raw.startswith("{") else raw
        if isinstance(msg, dict) and msg.get("done") == cmd["op"]:
            return int(msg["n"])
        if seen is None:
            raise AssertionError(f"unexpected message before the ack: {msg!r}")
        seen.append(msg)


async def test_fan_out_to_200_clients_in_order_exactly_once(rooms_server: Server) -> None:
    receivers = await asyncio.gather(*(join(rooms_server, "big") for _ in range(200)))
    sender = await join(rooms_server, "sender-room")
    try:
        count = 200
        assert await command(sender, op="blast", room="big", count=count) == 200 * count
        assert await command(sender, op="room", room="big", data="end") == 200

        results = await asyncio.gather(*(until_end(ws) for ws in receivers))
        expected = [f"{i}:" for i in range(count)]
        assert all(got == expected for got in results)
    finally:
        await asyncio.gather(*(ws.close() for ws in [*receivers, sender]))
    await wait_stats(rooms_server, lambda s: s["connections"] == 0 and s["rooms"] == {})


async def test_exclude_direct_predicate_leave(rooms_server: Server) -> None:
    alice = await join(rooms_server, "chat", "alice")
    bob = await join(rooms_server, "chat", "bob")
    admin = await connect(f"{rooms_server.ws}/ws/room/ops?id=root&role=admin")
    await admin.recv()
    try:
        # Everyone but the sender.
        assert await command(alice, op="room", room="chat", data="hi all", exclude_self=True) == 1
        assert await bob.recv() == "hi all"
        # One connection by id, wherever it is.
        assert await command(bob, op="to", id="root", data="psst") == 1
        assert await admin.recv() == "psst"
        assert await command(bob, op="to", id="nobody", data="lost") == 0
        # A predicate on connection state.
        assert await command(alice, op="admins", data="admins only") == 1
        assert await admin.recv() == "admins only"
        # To all connections.
        seen: list[Any] = []
        assert await command(admin, seen, op="all", data="everyone") == 3
        assert seen == ["everyone"]  # the sender is a member of "all" too
        assert await alice.recv() == "everyone" and await bob.recv() == "everyone"
        # Leave: no more room messages; the room survives while bob is in it.
        assert await command(alice, op="leave", room="chat") == 0
        seen = []
        assert await command(bob, seen, op="room", room="chat", data="still here?") == 1
        assert seen == ["still here?"]
        current = await stats(rooms_server)
        assert current["rooms"]["chat"] == ["bob"]
        # The only member leaves: the room is deleted.
        assert await command(bob, op="leave", room="chat") == 0
        current = await stats(rooms_server)
        assert "chat" not in current["rooms"] and current["rooms"]["ops"] == ["root"]
    finally:
        for ws in (alice, bob, admin):
            await ws.close()
    await wait_stats(rooms_server, lambda s: s["connections"] == 0 and s["rooms"] == {})


async def test_disconnect_mid_broadcast(rooms_server: Server) -> None:
    stayers = [await join(rooms_server, "mid") for _ in range(10)]
    leavers = [await join(rooms_server, "mid") for _ in range(10)]
    sender = await join(rooms_server, "mid-sender")
    try:
        blast = asyncio.ensure_future(command(sender, op="blast", room="mid", count=500, size=100))
        for ws in leavers:
            ws.transport.abort()  # gone without a close frame, mid-broadcast
        await blast
        assert await command(sender, op="room", room="mid", data="end") == 10

        for got in await asyncio.gather(*(until_end(ws) for ws in stayers)):
            assert got == [f"{i}:{'p' * 100}" for i in range(500)]
        current = await stats(rooms_server)
        assert len(current["rooms"]["mid"]) == 10
    finally:
        for ws in [*stayers, sender]:
            await ws.close()
    await wait_stats(rooms_server, lambda s: s["connections"] == 0 and s["rooms"] == {})
    # The leavers' failed sends whose futures delivery did not hold were read by nobody:
    # the server must not report them.
    assert "never retrieved" not in rooms_server.log()


async def test_connect_disconnect_cycles_leave_nothing(rooms_server: Server) -> None:
    for i in range(100):
        ws = await join(rooms_server, f"cycle-{i % 5}")
        if i % 2:
            ws.transport.abort()
        else:
            await ws.close()
    await wait_stats(rooms_server, lambda s: s["connections"] == 0 and s["rooms"] == {})


MSG_SIZE = 4 * 1024
BROADCASTS = 1000
INTERVAL = 0.002  # the sender's pace: what this test process's 45 clients can read


async def _stalled_client(server: Server, room: str) -> ClientConnection:
    """A client that stops reading: a tiny receive buffer and a one-frame queue."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return await connect(f"{server.ws}/ws/room/{room}", sock=sock, max_queue=1, max_size=None)


async def _timed_run(server: Server, room: str, healthy: list[ClientConnection]) -> float:
    """Time for every healthy client to receive BROADCASTS paced messages, in order."""
    sender = await join(server, f"{room}-sender")
    try:
        started = time.monotonic()
        blast = asyncio.ensure_future(
            command(
                sender, op="blast", room=room, count=BROADCASTS, size=MSG_SIZE, interval=INTERVAL
            )
        )

        async def collect(ws: ClientConnection) -> int:
            n = 0
            while n < BROADCASTS:
                msg = await asyncio.wait_for(ws.recv(), 30)
                assert isinstance(msg, str) and msg.startswith(f"{n}:")
                n += 1
            return n

        counts = await asyncio.gather(*(collect(ws) for ws in healthy))
        elapsed = time.monotonic() - started
        await blast
        assert counts == [BROADCASTS] * len(healthy)
        return elapsed
    finally:
        await sender.close()


@pytest.fixture(params=["rsgi", "asgi"])
def slow_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    env = {"MAX_WS_MESSAGE_BYTES": str(64 * 1024), "WS_SEND_TIMEOUT": "1"}
    server = start("tests.apps.rooms:app", request.param, env)
    yield server
    server.stop()


async def test_slow_consumers_do_not_slow_the_room(slow_server: Server) -> None:
    healthy = [await join(slow_server, "base", max_size=None) for _ in range(45)]
    try:
        baseline = await _timed_run(slow_server, "base", healthy)
    finally:
        await asyncio.gather(*(ws.close() for ws in healthy))

    stalled = [await _stalled_client(slow_server, "slow") for _ in range(5)]
    healthy = [await join(slow_server, "slow", max_size=None) for _ in range(45)]
    try:
        with_stalled = await _timed_run(slow_server, "slow", healthy)
        # The stalled clients were closed by the default policy, their queues freed,
        # and no queue ever went past its bound.
        current = await wait_stats(slow_server, lambda s: s["slow_closed"] >= 5)
        assert current["slow_closed"] == 5 and len(current["rooms"]["slow"]) == 45
        assert current["peak_queued_bytes"] <= current["queue_limit_bytes"]
        assert current["queued_bytes"] <= 45 * current["queue_limit_bytes"]
    finally:
        await asyncio.gather(*(ws.close() for ws in healthy))
        for ws in stalled:
            ws.transport.abort()
    print(
        f"\n{slow_server.interface}: 45 clients, {BROADCASTS} x {MSG_SIZE} B: "
        f"{baseline:.2f}s alone, {with_stalled:.2f}s with 5 stalled"
    )
    assert with_stalled < 2 * baseline


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
@pytest.mark.parametrize("target", ["server", "process group"])
async def test_shutdown_flushes_queues_then_sends_close_frames(interface: str, target: str) -> None:
    """SIGINT to the server, or to its whole process group as Ctrl-C in a terminal does
    (the worker then gets it twice: from the terminal and relayed by granian)."""
    server = start("tests.apps.rooms:app", interface)
    try:
        members = [await join(server, "bye", max_size=None) for _ in range(3)]
        sender = await join(server, "bye-sender")
        count = 300
        assert await command(sender, op="blast", room="bye", count=count, size=1000) == 3 * count
        # Right away: much is still queued.
        if target == "server":
            server.proc.send_signal(signal.SIGINT)
        else:
            os.killpg(server.proc.pid, signal.SIGINT)

        async def drain(ws: ClientConnection) -> list[str]:
            got: list[str] = []
            with pytest.raises(ConnectionClosed):
                while True:
                    got.append(str(await asyncio.wait_for(ws.recv(), 10)))
            return got

        for got in await asyncio.gather(*(drain(ws) for ws in members)):
            assert [m.split(":")[0] for m in got] == [str(i) for i in range(count)]
        for ws in [*members, sender]:
            # A close frame, never a dropped TCP connection (1006).
            expected = 1001 if interface == "asgi" else 1005
            assert ws.close_code == expected
        assert await asyncio.to_thread(server.proc.wait, 15) == 0
    finally:
        server.stop()


async def test_a_kept_connection_does_not_hold_the_socket(rooms_server: Server) -> None:
    """The app keeps a reference to a Connection after it ended: the client's close
    must still be answered at once."""
    ws = await connect(f"{rooms_server.ws}/ws/room/keep?keep=1", close_timeout=5)
    assert json.loads(await ws.recv())["joined"] == "keep"
    started = time.monotonic()
    await ws.close()
    assert time.monotonic() - started < 2 and ws.close_code in (1000, 1005)


async def test_counts_are_current_once_messages_are_delivered(rooms_server: Server) -> None:
    members = [await join(rooms_server, "count") for _ in range(3)]
    sender = await join(rooms_server, "count-sender")
    try:
        assert await command(sender, op="blast", room="count", count=50, size=10) == 150
        for ws in members:
            for i in range(50):
                assert str(await asyncio.wait_for(ws.recv(), 10)).startswith(f"{i}:")
        # Everything arrived: nothing may still be counted as queued.
        await wait_stats(
            rooms_server, lambda s: s["queued_messages"] == 0 and s["queued_bytes"] == 0
        )
    finally:
        for ws in [*members, sender]:
            await ws.close()
