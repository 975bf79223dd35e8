"""The shared plumbing: the log throttle, the backoff and the background-task set."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gobstopper._util import Backoff, TaskSet, Throttle, cancel_and_wait

log = logging.getLogger("gobstopper.test_util")


def test_throttle_logs_once_per_interval_and_counts_what_it_held(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr("gobstopper._util.time.monotonic", lambda: now[0])
    throttle = Throttle(log, interval=10.0)
    caplog.set_level(logging.WARNING, log.name)
    for i in range(5):
        throttle.warning("dropped %d", i)
    now[0] += 10.0
    throttle.error("lost %d", 99)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "dropped 0"),
        (logging.ERROR, "lost 99 (4 similar events in the last 10s not logged)"),
    ]


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 0.5)
    nominal = [0.1, 0.2, 0.4, 0.5, 0.5]
    for expected in nominal:
        delay = backoff.next()
        assert expected * 0.5 <= delay <= expected
    backoff.reset()
    assert 0.05 <= backoff.next() <= 0.1


@pytest.mark.parametrize(("first", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_refuses_bounds_that_make_no_sense(first: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first, maximum)


async def test_task_set_keeps_tasks_until_done_and_logs_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskSet(log, "renewal")
    release = asyncio.Event()

    async def waits() -> None:
        await release.wait()

    async def fails() -> None:
        raise RuntimeError("boom")

    tasks.spawn(waits())
    failing = tasks.spawn(fails())
    assert len(tasks) == 2
    # The set's own done-callback was added first, so it has run once this returns.
    await asyncio.wait((failing,), timeout=1.0)
    assert len(tasks) == 1
    assert "renewal failed" in caplog.text and "boom" in caplog.text
    release.set()
    await asyncio.wait_for(tasks.wait(), 1.0)
    assert not tasks


async def test_task_set_cancel_stops_every_task() -> None:
    tasks = TaskSet(log)
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = tasks.spawn(forever())
    await asyncio.wait_for(started.wait(), 1.0)
    await asyncio.wait_for(tasks.cancel(), 1.0)
    assert task.cancelled() and not tasks


async def test_cancel_and_wait_stops_a_task_that_swallowed_its_cancellation() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # What asyncio.wait_for does before Python 3.12 when its awaitable completes
            # as the cancellation arrives: the caller goes on.
            swallowed.set()
        await asyncio.Event().wait()

    async def failing() -> None:
        raise RuntimeError("boom")

    tasks = [asyncio.ensure_future(stubborn()), asyncio.ensure_future(failing())]
    await asyncio.sleep(0)  # both started
    await asyncio.wait_for(cancel_and_wait(tasks, again_s=0.05), 5.0)
    assert swallowed.is_set()
    assert tasks[0].cancelled()
    assert isinstance(tasks[1].exception(), RuntimeError)
