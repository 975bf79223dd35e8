"""The Redis broker's writer: publishes and presence writes, in order, in pipelines.

One task writes everything a node sends to Redis but its subscriptions, on one
connection, in the order it was queued: the messages one node publishes to one channel
arrive everywhere in that order (publications with history included: their script runs
in the same pipelines, and its reply goes back to the publisher), and a presence
removal never overtakes the addition it undoes. Each pipeline takes up to ``_BATCH``
commands (about ``_BATCH_BYTES`` of messages). The queue is bounded: past
``max_pending`` commands a publish is refused.

Readers of presence wait for the writes queued before them (``written()``), so that a
node reads its own joins and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..._util import Throttle
from ...errors import BrokerUnavailable

__all__ = ["HDEL_IF_OWNER", "Call", "Writer"]

logger = logging.getLogger("gobstopper.broker")

_BATCH = 512  # commands per pipeline, at most
_BATCH_BYTES = 512 * 1024  # and about this many bytes of messages
# After a failed pipeline, the writer waits this long: the listener notices the outage.
_PAUSE_S = 0.1
# Deletes a presence entry only if it still names the node given: an id that has moved
# to another node, or was written again since, is left alone.
HDEL_IF_OWNER = """
local n = 0
for i = 1, #ARGV - 1 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[#ARGV] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
"""

#: ``hdel(key, members, node, client)``: the script above, run on ``client``.
HDel = Callable[[str, list[str], str, Any], Any]
#: ``unmade(key, member)``: told of a presence removal that failed on its own.
Unmade = Callable[[str, str], None]
#: A queued command: ("publish", channel, data), ("history", channel, Call),
#: ("hset", key, member) or ("hdel", key, member).
Op = tuple[str, str, Any]
#: The commands that carry a message (lost, they count as dropped).
_MESSAGES = ("publish", "history")


@dataclass(slots=True)
class Call:
    """A publication whose reply its publisher awaits (one with history).

    Attributes:
        run: queues the command on the pipeline given.
        size: bytes it carries (for the pipeline's size).
        reply: set to Redis's reply, or to ``BrokerUnavailable``; a publisher that
            stopped waiting cancels it, and a call not written yet is then skipped.
    """

    run: Callable[[Any], Awaitable[Any]]
    size: int
    reply: asyncio.Future[Any]


class Writer:
    """The ordered, bounded queue of a node's writes to Redis, and the task writing it.

    Args:
        client: the redis client.
        hdel: runs the owner-checked presence removal (``HDEL_IF_OWNER``).
        url: the broker's URL without password (for errors).
        timeout: seconds a pipeline may take.
        max_pending: commands waiting before ``put`` refuses more.
        unmade: told of each presence removal that failed on its own while the rest of
            its pipeline went through (on a cluster: its master's connection failed);
            the broker makes it later. Without it, such a removal is logged and lost.
    """

    def __init__(
        self,
        client: Any,
        hdel: HDel,
        url: str,
        timeout: float,
        max_pending: int,
        unmade: Unmade | None = None,
    ) -> None:
        self._client = client
        self._hdel = hdel
        self._unmade = unmade
        self._url = url
        self._timeout = timeout
        self._max_pending = max_pending
        self._ops: deque[Op] = deque()
        # Commands queued and written (or dropped) so far.
        self._queued = 0
        self._done = 0
        self._flushed: list[tuple[int, asyncio.Future[None]]] = []
        self._ready: asyncio.Event | None = None
        self._throttle = Throttle(logger)
        #: This node's id, written as the owner of its presence entries.
        self.node_id = ""
        #: Whether Redis can be written to now (the listener says); while False the
        #: queue waits.
        self.connected = False
        #: Messages that could not be written (lost: delivery is at most once).
        self.dropped = 0

    def put(self, op: str, target: str, arg: Any) -> None:
        """Queue one command.

        Raises:
            BrokerUnavailable: ``max_pending`` commands wait already.
        """
        if len(self._ops) >= self._max_pending:
            self.dropped += 1
            raise BrokerUnavailable(self._url, "too many messages waiting for Redis")
        self._ops.append((op, target, arg))
        self._queued += 1
        if self._ready is not None:
            self._ready.set()

    def call(self, channel: str, run: Callable[[Any], Awaitable[Any]], size: int) -> Call:
        """Queue a publication whose reply is awaited (``Call``); in order with the rest.

        Raises:
            BrokerUnavailable: ``max_pending`` commands wait already.
        """
        call = Call(run, size, asyncio.get_running_loop().create_future())
        self.put("history", channel, call)
        return call

    def fail_calls(self, reason: str) -> None:
        """Fail the calls still queued (the connection is lost, or the broker stops):
        their publishers learn it now, and nothing of theirs is written later."""
        calls = [op for op in self._ops if op[0] == "history"]
        if not calls:
            return
        self._ops = deque(op for op in self._ops if op[0] != "history")
        self._queued -= len(calls)
        for _, _, call in calls:
            if not call.reply.done():
                self.dropped += 1
                call.reply.set_exception(BrokerUnavailable(self._url, reason))

    def forget(self, op: Op) -> None:
        """Drop every queued copy of ``op`` (a removal that a later addition undoes)."""
        kept = deque(o for o in self._ops if o != op)
        self._queued -= len(self._ops) - len(kept)
        self._ops = kept

    def wake(self) -> None:
        """Write what waits (the connection is back)."""
        if self._ready is not None and self._ops:
            self._ready.set()

    async def written(self) -> None:
        """Wait (at most the timeout) until what was queued so far has been written."""
        if self._done >= self._queued or not self.connected:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._flushed.append((self._queued, waiter))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(waiter, self._timeout)

    async def run(self) -> None:
        """Write the queue while connected, until cancelled."""
        ready = self._ready = asyncio.Event()
        while True:
            await ready.wait()
            ready.clear()
            while self._ops and self.connected:
                batch = self._next_batch()
                try:
                    results = await self._execute(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the connection failed: nothing is known sent
                    self._batch_failed(batch, exc)
                    # Let the supervisor notice the outage instead of spinning here.
                    await asyncio.sleep(_PAUSE_S)
                    continue
                failed = [
                    op
                    for op, result in zip(batch, results, strict=True)
                    if isinstance(result, Exception)
                ]
                self._reply(batch, results)
                if self._unmade is not None:
                    # A lost removal would leave the member listed under a live node
                    # for good: nothing else ever deletes it.
                    for op, key, member in failed:
                        if op == "hdel":
                            self._unmade(key, member)
                if failed:
                    # An error reply (e.g. Redis out of memory) fails one command only.
                    lost = sum(op in _MESSAGES for op, _, _ in failed)
                    self.dropped += lost
                    self._throttle.error(
                        "broker: %d command(s) refused by Redis (%s); %d message(s) lost",
                        len(failed),
                        next(r for r in results if isinstance(r, Exception)),
                        lost,
                    )
                self._advance(len(batch))

    async def _execute(self, batch: list[Op]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for op, target, arg in batch:
                if op == "publish":
                    pipe.publish(target, arg)
                elif op == "history":
                    await arg.run(pipe)
                elif op == "hset":
                    pipe.hset(target, arg, self.node_id)
                else:
                    await self._hdel(target, [arg], self.node_id, pipe)
            results: list[Any] = await asyncio.wait_for(
                pipe.execute(raise_on_error=False), self._timeout
            )
        return results

    def _next_batch(self) -> list[Op]:
        batch: list[Op] = []
        size = 0
        ops = self._ops
        while ops and len(batch) < _BATCH and (not batch or size < _BATCH_BYTES):
            op = ops.popleft()
            if op[0] == "publish":
                size += len(op[2])
            elif op[0] == "history":
                if op[2].reply.done():  # its publisher gave up waiting: not written
                    self._advance(1)
                    continue
                size += op[2].size
            batch.append(op)
        return batch

    def _reply(self, batch: list[Op], results: list[Any]) -> None:
        for (kind, _, call), result in zip(batch, results, strict=True):
            if kind != "history" or call.reply.done():
                continue
            if isinstance(result, Exception):
                call.reply.set_exception(BrokerUnavailable(self._url, str(result)))
            else:
                call.reply.set_result(result)

    def _batch_failed(self, batch: list[Op], exc: BaseException) -> None:
        lost = sum(op in _MESSAGES for op, _, _ in batch)
        self.dropped += lost
        reason = str(exc) or type(exc).__name__
        for kind, _, call in batch:
            if kind == "history" and not call.reply.done():
                # Unknown whether Redis ran it: delivery is at most once.
                call.reply.set_exception(BrokerUnavailable(self._url, reason))
        self._advance(len(batch))
        # Removals go back to the front, in order, for the next connection (additions
        # are written again from the broker's members on reconnection).
        removals = [op for op in batch if op[0] == "hdel"]
        for op in reversed(removals):
            self._ops.appendleft(op)
        self._queued += len(removals)
        self._throttle.error(
            "broker: %d message(s) to Redis lost (%s); delivery is at most once", lost, exc
        )

    def _advance(self, count: int) -> None:
        self._done += count
        waiting = []
        for mark, waiter in self._flushed:
            if mark <= self._done:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((mark, waiter))
        self._flushed = waiting
