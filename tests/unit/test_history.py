"""The history store contract, run against every store (no sockets for the memory one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from gobstopper.history import HistoryStore, MemoryHistory, Position, Window

StoreFactory = Callable[[], HistoryStore]


@pytest.fixture(params=["memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HistoryStore]:
    yield MemoryHistory()


async def test_offsets_count_up_from_one_in_one_epoch(store: HistoryStore) -> None:
    positions = [await store.append("news", b"m%d" % i, 10, 60) for i in range(1, 4)]
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1
    other = await store.append("sport", b"x", 10, 60)
    assert other.offset == 1  # per channel


async def test_read_since_and_last(store: HistoryStore) -> None:
    for i in range(1, 6):
        await store.append("news", b"m%d" % i, 10, 60)
    window = await store.read("news", since=2)
    assert [(p.offset, p.data) for p in window.publications] == [(3, b"m3"), (4, b"m4"), (5, b"m5")]
    assert window.position.offset == 5 and window.first == 1
    assert [p.offset for p in (await store.read("news", since=2, limit=2)).publications] == [3, 4]
    assert [p.offset for p in (await store.read("news", limit=2)).publications] == [4, 5]
    assert (await store.read("news", limit=0)).publications == []
    assert (await store.read("news", since=5)).publications == []


async def test_only_the_last_size_are_kept(store: HistoryStore) -> None:
    for i in range(1, 8):
        await store.append("news", b"m%d" % i, 3, 60)
    window = await store.read("news")
    assert [p.offset for p in window.publications] == [5, 6, 7]
    assert window.first == 5
    epoch = window.position.epoch
    assert window.follows(Position(4, epoch))  # saw 4: 5, 6, 7 are all here
    assert window.follows(Position(7, epoch))  # saw everything
    assert not window.follows(Position(3, epoch))  # 4 fell out of the window
    assert not window.follows(Position(8, epoch))  # ahead of the stream: made up
    assert not window.follows(Position(6, epoch + "x"))  # another epoch


async def test_a_channel_never_published_has_a_position_to_start_from(store: HistoryStore) -> None:
    window = await store.read("quiet")
    assert window.publications == [] and window.position.offset == 0
    assert window.follows(window.position)
    first = await store.append("quiet", b"hello", 10, 60)
    assert first == Position(1, window.position.epoch)  # the epoch handed out still holds


async def test_a_new_store_has_new_epochs() -> None:
    a, b = MemoryHistory(), MemoryHistory()
    pa = await a.append("news", b"x", 10, 60)
    pb = await b.append("news", b"x", 10, 60)
    assert pa.offset == pb.offset == 1 and pa.epoch != pb.epoch
    window = await b.read("news")
    assert not window.follows(pa)  # a restarted store: a position from before is unusable


async def test_publications_expire_and_a_dropped_stream_comes_back_in_a_new_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("gobstopper.history.memory.time.monotonic", lambda: now[0])
    store = MemoryHistory()
    old = await store.append("news", b"a", 10, 5)
    await store.append("news", b"b", 10, 5)
    now[0] += 6
    window = await store.read("news")
    assert window.publications == [] and window.first == 3  # both expired
    assert not window.follows(Position(1, old.epoch))  # 2 is gone
    assert window.follows(Position(2, old.epoch))  # nothing missed after 2
    # Enough appends elsewhere for a sweep: the expired stream is forgotten...
    for i in range(1100):
        await store.append(f"other{i}", b"x", 1, 5)
    again = await store.append("news", b"c", 10, 5)
    # ...and comes back in a new epoch, so that no position from before can be taken
    # for one of the new sequence.
    assert again.epoch != old.epoch and again.offset == 1


def test_window_follows_checks_every_bound() -> None:
    window = Window([], Position(10, "e"), first=6)
    assert [window.follows(Position(n, "e")) for n in (4, 5, 6, 10, 11)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert not window.follows(Position(-1, "e"))
