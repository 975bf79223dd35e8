"""The ASGI adapter's eager sends: a send that does not suspend needs no task."""

from __future__ import annotations

import asyncio

import pytest

from gobstopper.transport.asgi import _start_eagerly


async def test_a_send_that_does_not_suspend_is_done_at_once() -> None:
    ran: list[str] = []

    async def send() -> None:
        ran.append("sent")

    fut = _start_eagerly(send())
    assert ran == ["sent"]  # before any loop turn
    assert fut.done() and fut.result() is None and not isinstance(fut, asyncio.Task)


async def test_a_send_that_fails_at_once_gives_a_failed_future() -> None:
    async def send() -> None:
        raise OSError("client gone")

    fut = _start_eagerly(send())
    assert fut.done()
    with pytest.raises(OSError, match="client gone"):
        fut.result()


async def test_a_send_that_suspends_is_finished_by_a_task_in_order() -> None:
    loop = asyncio.get_running_loop()
    writable = loop.create_future()
    steps: list[str] = []

    async def send() -> None:
        steps.append("start")
        await writable  # the server waits for its buffer to drain
        steps.append("after drain")
        await asyncio.sleep(0)
        steps.append("done")

    fut = _start_eagerly(send())
    assert steps == ["start"] and not fut.done()
    writable.set_result(None)
    await asyncio.wait_for(fut, 1)
    assert steps == ["start", "after drain", "done"]


async def test_a_suspended_send_sees_the_failure_it_waited_on() -> None:
    loop = asyncio.get_running_loop()
    writable = loop.create_future()
    seen: list[BaseException] = []

    async def send() -> None:
        try:
            await writable
        except ConnectionResetError as exc:
            seen.append(exc)
            raise

    fut = _start_eagerly(send())
    writable.set_exception(ConnectionResetError("reset"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(fut, 1)
    assert len(seen) == 1


async def test_cancelling_a_suspended_send_cancels_what_it_waits_on() -> None:
    loop = asyncio.get_running_loop()
    writable = loop.create_future()

    async def send() -> None:
        await writable

    fut = _start_eagerly(send())
    await asyncio.sleep(0)
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert writable.cancelled()


async def test_a_send_that_suspends_twice_still_completes() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    steps: list[str] = []

    async def send() -> None:
        await first
        steps.append("first")
        await second  # a second wait on the server (e.g. its buffer filled again)
        steps.append("second")

    fut = _start_eagerly(send())
    first.set_result(None)
    await asyncio.sleep(0)
    second.set_result(None)
    await asyncio.wait_for(fut, 1)
    assert steps == ["first", "second"]
