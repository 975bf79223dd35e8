"""One connection's outbox through its own methods, on a fake transport (no sockets).

Broadcast-level behaviour (who gets a message, the policies seen through a broadcast,
the send timeout, shutdown) is in test_manager.py; here each ``put`` is checked for what
it returns and what it leaves queued.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from gobstopper import CloseCode, Connection, WebSocketManager
from gobstopper.transport.base import TransportClosed

from .fake_transport import FakeTransport, connected, manager, release_until


def size(data: str | bytes) -> int:
    return len(data.encode() if isinstance(data, str) else data)


def put(conn: Connection, *messages: str | bytes) -> list[bool]:
    return [conn.outbox.put(m, size(m)) for m in messages]


async def stalled(
    window: int | None = None,
    transport: FakeTransport | None = None,
    group: int | None = None,
    **settings: Any,
) -> tuple[WebSocketManager, Connection, FakeTransport]:
    """A managed connection whose sends stay unfinished until ``transport.release()``."""
    mgr = manager(**settings)
    transport = FakeTransport() if transport is None else transport
    if window is not None:
        transport.send_window = window
    if group is not None:
        transport.send_group = group
    conn, transport = await connected(mgr, "c", transport, **settings)
    transport.stalled = True
    return mgr, conn, transport


@pytest.mark.parametrize("window", [1, 4, 64])
async def test_sends_start_at_once_up_to_the_window_the_rest_drain_in_order(window: int) -> None:
    _, conn, transport = await stalled(window)
    messages = [f"m{i}" for i in range(window + 5)]
    assert put(conn, *messages) == [True] * len(messages)
    started = [data for data, _ in transport.stalled_sends]
    assert started == messages[:window]  # the backlog waits for credit
    assert conn.outbox.queued_messages == len(messages)
    assert conn.outbox.queued_bytes == sum(map(size, messages))
    await release_until(transport, len(messages))
    assert transport.sent == messages
    assert conn.outbox.queued_messages == 0 and conn.outbox.queued_bytes == 0


async def test_finished_sends_leave_the_counts() -> None:
    _, conn, transport = await stalled()
    assert put(conn, "aaaa", b"bb", "c") == [True, True, True]
    assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (3, 7)
    transport.release(1)
    assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (2, 3)
    transport.release()
    assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (0, 0)
    # Text stays text and bytes stay bytes.
    assert transport.sent == ["aaaa", b"bb", "c"]


async def test_a_new_message_never_overtakes_the_backlog() -> None:
    _, conn, transport = await stalled()
    put(conn, *(f"m{i}" for i in range(6)))  # 4 started, 2 backlogged
    transport.release()  # credit is back, but the backlog has not been drained yet
    assert conn.outbox.queued_messages == 2  # the finished sends are counted out
    assert put(conn, "new") == [True]
    assert transport.sent == ["m0", "m1", "m2", "m3"]  # "new" did not go ahead of m4, m5
    await release_until(transport, 7)
    assert transport.sent == [*(f"m{i}" for i in range(6)), "new"]


@pytest.mark.parametrize(("window", "group"), [(4, 1), (8, 3), (8, 8)])
async def test_order_survives_any_interleaving_of_puts_and_completions(
    window: int, group: int
) -> None:
    rng = random.Random(7)
    _, conn, transport = await stalled(window, group=group, send_queue_messages=10_000)
    expected: list[str | bytes] = []
    for i in range(500):
        message: str | bytes = f"t{i}" if rng.random() < 0.5 else f"b{i}".encode()
        assert conn.outbox.put(message, size(message))
        expected.append(message)
        if rng.random() < 0.2:
            transport.release(rng.randrange(len(transport.stalled_sends) + 1))
        if rng.random() < 0.2:
            await asyncio.sleep(0)  # a loop turn: the drain task may start more sends
    await release_until(transport, len(expected))
    assert transport.sent == expected
    assert await conn.outbox.flush(1)


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "close"])
async def test_the_message_bound_counts_started_and_backlogged_sends(policy: str) -> None:
    mgr, conn, transport = await stalled(send_queue_messages=6, slow_consumer_policy=policy)
    assert put(conn, *(f"m{i}" for i in range(6))) == [True] * 6
    assert conn.outbox.queued_messages == 6 and conn.outbox.dropped == 0
    # The seventh does not fit: each policy answers differently.
    accepted = put(conn, "m6") == [True]
    if policy == "drop_newest":
        assert not accepted and conn.outbox.dropped == 1 and mgr.stats.dropped == 1
        assert not conn.closed
        await release_until(transport, 6)
        assert transport.sent == [f"m{i}" for i in range(6)]
    elif policy == "drop_oldest":
        # The oldest message not yet started (m4) makes room for it.
        assert accepted and conn.outbox.dropped == 1 and mgr.stats.dropped == 1
        assert not conn.closed
        await release_until(transport, 6)
        assert transport.sent == ["m0", "m1", "m2", "m3", "m5", "m6"]
    else:
        assert not accepted and conn.outbox.dropped == 0 and mgr.stats.slow_closed == 1
        assert conn.closed and conn.ws.close_code == CloseCode.TRY_AGAIN_LATER
        assert "c" not in mgr
        assert put(conn, "later") == [False]
        assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (0, 0)


async def test_drop_oldest_with_everything_started_drops_the_new_message() -> None:
    mgr, conn, transport = await stalled(send_queue_messages=4, slow_consumer_policy="drop_oldest")
    assert put(conn, "a", "b", "c", "d") == [True] * 4  # all started: nothing to drop
    assert put(conn, "e", "f") == [False, False]
    assert conn.outbox.dropped == 2 and mgr.stats.dropped == 2 and not conn.closed
    transport.release()
    assert transport.sent == ["a", "b", "c", "d"]


async def test_drop_oldest_makes_room_in_bytes_for_a_big_message() -> None:
    settings = {"send_queue_bytes": 100, "max_message_bytes": 100}
    _, conn, transport = await stalled(slow_consumer_policy="drop_oldest", **settings)
    small = [f"{i}" * 10 for i in range(7)]  # 4 started, 3 backlogged: 70 bytes
    assert put(conn, *small) == [True] * 7
    assert put(conn, "x" * 50) == [True]  # 2 of the backlog go so that 50 + 50 fit
    assert conn.outbox.dropped == 2 and conn.outbox.queued_bytes == 100
    await release_until(transport, 6)
    assert transport.sent == [*small[:4], small[6], "x" * 50]


async def test_drop_newest_keeps_within_the_byte_bound() -> None:
    settings = {"send_queue_bytes": 100, "max_message_bytes": 100}
    _, conn, transport = await stalled(slow_consumer_policy="drop_newest", **settings)
    assert put(conn, "a" * 60, "b" * 41, "c" * 40, "d") == [True, False, True, False]
    assert conn.outbox.queued_bytes == 100 and conn.outbox.dropped == 2
    transport.release()
    assert transport.sent == ["a" * 60, "c" * 40]
    assert put(conn, "e" * 100) == [True]  # the bound counts what is not sent yet


class RefusingTransport(FakeTransport):
    """A server that refuses to start a send once the client has gone."""

    def start_send(self, data: str | bytes) -> Any:
        if self.peer_gone:
            raise TransportClosed(CloseCode.GOING_AWAY)
        return super().start_send(data)


async def test_a_send_refused_at_once_marks_the_connection_closed() -> None:
    mgr = manager()
    conn, transport = await connected(mgr, "c", RefusingTransport())
    assert put(conn, "before") == [True]
    transport.peer_gone = True
    assert put(conn, "after") == [False]
    assert conn.closed and conn.ws.close_code == CloseCode.GOING_AWAY
    assert "c" not in mgr and put(conn, "again") == [False]
    assert transport.sent == ["before"]


async def test_a_send_that_fails_later_marks_the_connection_closed() -> None:
    mgr = manager()
    conn, transport = await connected(mgr, "c")
    transport.peer_gone = True  # started sends now fail
    assert put(conn, "lost") == [True]  # started: the failure is not known yet
    assert conn.outbox.queued_messages == 0  # looking at the counts retires it
    assert conn.closed and conn.ws.close_code == CloseCode.ABNORMAL_CLOSURE
    assert "c" not in mgr and put(conn, "more") == [False]


async def test_flush_waits_for_everything_to_be_sent() -> None:
    _, conn, transport = await stalled()
    assert await conn.outbox.flush(0.01)  # nothing queued: at once
    put(conn, *(f"m{i}" for i in range(10)))
    flushing = asyncio.ensure_future(conn.outbox.flush(5))
    await release_until(transport, 10)
    assert await asyncio.wait_for(flushing, 5) is True
    assert conn.outbox.queued_messages == 0


async def test_flush_gives_up_at_its_timeout_and_keeps_the_queue() -> None:
    _, conn, transport = await stalled()
    put(conn, *(f"m{i}" for i in range(6)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await conn.outbox.flush(0.05) is False
    assert 0.04 <= loop.time() - started < 2
    assert conn.outbox.queued_messages == 6 and not conn.closed
    await release_until(transport, 6)  # what was queued still goes, in order
    assert transport.sent == [f"m{i}" for i in range(6)]


async def test_flush_of_a_closed_outbox_says_so() -> None:
    conn = (await stalled())[1]
    put(conn, "a", "b")
    asyncio.get_running_loop().call_soon(conn.outbox.close)  # while the flush waits
    assert await asyncio.wait_for(conn.outbox.flush(5), 1) is False
    assert await conn.outbox.flush(1) is False


async def test_close_drops_the_queue_and_nothing_goes_afterwards() -> None:
    mgr, conn, transport = await stalled()
    put(conn, *(f"m{i}" for i in range(8)))
    conn.outbox.close()
    assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (0, 0)
    assert put(conn, "late") == [False]
    transport.release()  # the started sends were cancelled: the server drops them
    await asyncio.sleep(0)  # one loop turn, in which a drain task left running would act
    assert transport.sent == []
    conn.outbox.close()  # twice is harmless
    assert mgr.stats.dropped == 0 and conn.outbox.dropped == 0


async def test_the_totals_count_what_was_handed_to_the_server() -> None:
    mgr, conn, transport = await stalled(
        4, send_queue_messages=6, slow_consumer_policy="drop_oldest"
    )
    other, _ = await connected(mgr, "d")
    # A broadcast counts its members at once; a backlogged message counts once started.
    assert await mgr.broadcast("ab") == 2
    assert put(conn, *(f"m{i}" for i in range(5))) == [True] * 5
    stats = mgr.stats
    assert (stats.sent, stats.sent_bytes) == (5, 10)  # "ab" twice, m0-m2; m3, m4 wait
    assert put(conn, "m5") == [True]  # drops m3, the oldest not started
    assert (stats.sent, stats.sent_bytes, stats.dropped) == (5, 10, 1)
    assert stats.peak_queued_bytes == 12  # "ab" and m0-m4, before m3 was dropped
    await release_until(transport, 6)
    assert (stats.sent, stats.sent_bytes) == (7, 14)
    assert conn.outbox.queued_bytes == 0 and stats.peak_queued_bytes == 12
    await mgr.shutdown(grace=0)
    assert other.closed and stats.peak_queued_bytes == 12


# -- groups: one held future for several sends (servers whose sends finish in order) ------


async def test_a_group_is_known_finished_when_its_last_send_is() -> None:
    _, conn, transport = await stalled(8, group=4)
    messages = [f"m{i}" for i in range(10)]
    assert put(conn, *messages) == [True] * 10
    assert len(transport.stalled_sends) == 8  # the window counts every send, held or not
    transport.release(3)  # the first group's last send is still going
    assert conn.outbox.queued_messages == 10 and conn.outbox.queued_bytes == 20
    transport.release(1)
    assert conn.outbox.queued_messages == 6 and conn.outbox.queued_bytes == 12
    await release_until(transport, 10)
    assert transport.sent == messages
    assert await conn.outbox.flush(1)
    assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (0, 0)


async def test_a_group_ends_early_once_it_holds_enough_bytes() -> None:
    settings = {"max_message_bytes": 48 * 1024}
    _, conn, transport = await stalled(8, group=8, **settings)
    big = "x" * (40 * 1024)
    assert put(conn, big, big, "a") == [True] * 3  # the first two make a group
    transport.release(2)
    assert conn.outbox.queued_messages == 1  # known finished with the second send


async def test_a_failed_send_without_a_held_future_is_seen_through_the_held_one() -> None:
    mgr, conn, transport = await stalled(group=4)
    assert put(conn, "a", "b", "c", "d") == [True] * 4
    # The client goes after the first send: the server fails the rest, in order.
    transport.release(1)
    for _, fut in transport.stalled_sends:
        fut.set_exception(TransportClosed(1006))
    assert conn.outbox.queued_messages == 0
    assert conn.closed and conn.ws.close_code == CloseCode.ABNORMAL_CLOSURE
    assert "c" not in mgr and put(conn, "more") == [False]


async def test_a_stuck_group_times_out_as_a_send_does() -> None:
    mgr, conn, transport = await stalled(8, group=4, send_timeout=0.05)
    assert put(conn, *(f"m{i}" for i in range(9))) == [True] * 9  # one backlogged
    transport.release(3)  # the fourth send, the end of the first group, stays blocked
    assert await asyncio.wait_for(conn.ws.wait_closed(), 2) == CloseCode.TRY_AGAIN_LATER
    assert mgr.stats.slow_closed == 1 and "c" not in mgr


async def test_flush_waits_for_a_group_not_yet_ended() -> None:
    _, conn, transport = await stalled(8, group=4)
    assert put(conn, "a", "b") == [True, True]  # an open group: no future held yet
    assert await conn.outbox.flush(0.05) is False
    flushing = asyncio.ensure_future(conn.outbox.flush(5))
    await asyncio.sleep(0)
    transport.release(1)
    done, _ = await asyncio.wait((flushing,), timeout=0.01)
    assert not done  # "b" is still going
    transport.release()
    assert await asyncio.wait_for(flushing, 5) is True
    assert transport.sent == ["a", "b"] and conn.outbox.queued_messages == 0
    assert put(conn, "c") == [True]  # the window is whole again


async def test_group_totals_and_peak_stay_exact() -> None:
    mgr, conn, transport = await stalled(8, group=4, send_queue_messages=12)
    messages = [f"m{i:02}" for i in range(11)]  # 3 bytes each: 8 started, 3 backlogged
    assert put(conn, *messages) == [True] * 11
    stats = mgr.stats
    assert (stats.sent, stats.sent_bytes, stats.backlogged) == (8, 24, 3)
    assert stats.peak_queued_bytes == 33
    transport.release(5)  # one group known finished, one send of the next
    assert conn.outbox.queued_bytes == 21 and stats.peak_queued_bytes == 33
    await release_until(transport, 11)
    assert (stats.sent, stats.sent_bytes, stats.backlogged) == (11, 33, 0)
    assert conn.outbox.queued_bytes == 0 and stats.peak_queued_bytes == 33
    assert transport.sent == messages


async def test_close_reads_every_held_outcome_and_cancels_the_rest() -> None:
    _, conn, transport = await stalled(8, group=2)
    put(conn, "a", "b", "c", "d", "e")
    transport.stalled_sends[1][1].set_exception(TransportClosed(1006))
    conn.outbox.close()
    futures = [fut for _, fut in transport.stalled_sends]
    # The held futures: b (failed, its outcome read), d and e (cancelled); a and c are
    # not held, and the server fails them once the connection is closed.
    assert [f.cancelled() for f in futures] == [False, False, False, True, True]
    assert (conn.outbox.queued_messages, conn.outbox.queued_bytes) == (0, 0)
