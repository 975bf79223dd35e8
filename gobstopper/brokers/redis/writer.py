"""The Redis broker's writer: publishes and presence writes, in order, in pipelines.

One task writes everything a node sends to Redis but its subscriptions, on one
connection, in the order it was queued: the messages one node publishes to one channel
arrive everywhere in that order, and a presence removal never overtakes the addition
it undoes. Each pipeline takes up to ``_BATCH`` commands (about ``_BATCH_BYTES`` of
messages). The queue is bounded: past ``max_pending`` commands a publish is refused.

Readers of presence wait for the writes queued before them (``written()``), so that a
node reads its own joins and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..._util import Throttle
from ...errors import BrokerUnavailable

__all__ = ["HDEL_IF_OWNER", "Writer"]

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
#: A queued command: ("publish", channel, data), ("hset", key, member) or ("hdel", key, member).
Op = tuple[str, str, Any]


class Writer:
    """The ordered, bounded queue of a node's writes to Redis, and the task writing it.

    Args:
        client: the redis client.
        hdel: runs the owner-checked presence removal (``HDEL_IF_OWNER``).
        url: the broker's URL without password (for errors).
        timeout: seconds a pipeline may take.
        max_pending: commands waiting before ``put`` refuses more.
    """

    def __init__(self, client: Any, hdel: HDel, url: str, timeout: float, max_pending: int) -> None:
        self._client = client
        self._hdel = hdel
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
                if failed:
                    # An error reply (e.g. Redis out of memory) fails one command only.
                    lost = sum(op == "publish" for op, _, _ in failed)
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
            batch.append(op)
        return batch

    def _batch_failed(self, batch: list[Op], exc: BaseException) -> None:
        lost = sum(op == "publish" for op, _, _ in batch)
        self.dropped += lost
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
