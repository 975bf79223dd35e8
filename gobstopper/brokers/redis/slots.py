"""Routing for the Redis Cluster broker: which master serves a key, and pipelines that
split by master.

A cluster divides its keys (and its shard channels) into 16384 slots by a CRC of the
name, or of the part between ``{`` and ``}`` when there is one (a hash tag); each master
serves some ranges of slots (``CLUSTER SLOTS``). ``SlotMap`` holds that table;
``Shard`` is one master with its own client.

``Router`` stands where the single-Redis broker's client stands for ``Writer`` and
``RedisHistory``: its ``pipeline()`` is a ``Batch`` that sends each command to the
pipeline of its key's master and runs those pipelines side by side, and its scripts
run on their first key's master. The writer stays one ordered queue: a node's
commands on one channel keep their order, because a batch runs in segments, and a
command whose channel (or presence key) already went to another master in the
current segment starts the next one, which runs only once the earlier one is answered.
A master known to be down is not written to: its commands fail at once, the others go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import MovedError, RedisError

__all__ = ["Batch", "Router", "Shard", "SlotMap", "read_slot_map", "tag_for"]

_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


@dataclass(eq=False)
class Shard:
    """One master, its client, and whether it answers now.

    Attributes:
        name: ``host:port``.
        client: a ``redis.asyncio.Redis`` for that master alone.
        tag: a hash tag (``{...}``) whose slot this master serves: keys of this node
            that must live on this master (its liveness key) carry it.
        connected: whether its pub/sub connection is up (its supervisor says).
        pubsub: that connection, while it is up.
    """

    name: str
    client: Any
    tag: str
    connected: bool = False
    since: float = 0.0
    last_error: str | None = None
    reconnects: int = 0
    pubsub: Any = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SlotMap:
    """Which master serves each slot: ``owners[slot]`` is a ``host:port`` or None."""

    owners: tuple[str | None, ...]

    @property
    def masters(self) -> list[str]:
        """Every master serving a slot, in slot order."""
        return list(dict.fromkeys(o for o in self.owners if o is not None))

    def served(self) -> dict[str, tuple[int, ...]]:
        """The slots of each master."""
        slots: dict[str, list[int]] = {}
        for slot, owner in enumerate(self.owners):
            if owner is not None:
                slots.setdefault(owner, []).append(slot)
        return {master: tuple(s) for master, s in slots.items()}

    def owner(self, name: str) -> str | None:
        """The master serving key (or shard channel) ``name``."""
        return self.owners[key_slot(name.encode())]


async def read_slot_map(client: Any) -> SlotMap:
    """Ask one cluster node for the slot table (``CLUSTER SLOTS``)."""
    reply = await client.execute_command("CLUSTER SLOTS")
    owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    # redis-py parses the reply into {(first, last): {"primary": (host, port), ...}}.
    for (first, last), nodes in _ranges(reply):
        host, port = nodes
        for slot in range(int(first), int(last) + 1):
            owners[slot] = f"{host}:{port}"
    return SlotMap(tuple(owners))


def _ranges(reply: Any) -> Iterable[tuple[tuple[int, int], tuple[str, int]]]:
    if isinstance(reply, dict):
        for (first, last), nodes in reply.items():
            host, port = nodes["primary"]
            yield (int(first), int(last)), (_text(host), int(port))
        return
    for entry in reply:
        first, last, primary = entry[0], entry[1], entry[2]
        yield (int(first), int(last)), (_text(primary[0]), int(primary[1]))


def tag_for(slots: SlotMap, master: str) -> str:
    """A hash tag whose slot ``master`` serves: the first of ``{0}``, ``{1}``, ... (every
    node computes the same one from the same table)."""
    for i in range(REDIS_CLUSTER_HASH_SLOTS * 64):
        if slots.owners[key_slot(str(i).encode())] == master:
            return f"{{{i}}}"
    raise LookupError(f"no slot of {master}")


class Router:
    """A stand-in for a client: pipelines and scripts that go to the right master.

    Args:
        route: the shard serving a key, or None when no known master serves it.
        failed: told when a master's pipeline failed (its connection is in doubt).
        timeout: seconds one master's pipeline may take.
    """

    def __init__(
        self,
        route: Callable[[str], Shard | None],
        failed: Callable[[Shard, BaseException], None],
        timeout: float,
    ) -> None:
        self.route = route
        self._failed = failed
        self._timeout = timeout
        # Queues the commands of a key no master serves; never connects.
        self._nowhere: Any = aioredis.Redis(host="unroutable.invalid")

    def pipeline(self, transaction: bool = False) -> Batch:
        del transaction  # never one: commands of many slots
        return Batch(self)

    def register_script(self, script: str) -> RoutedScript:
        return RoutedScript(self, self._nowhere.register_script(script))

    def client_for(self, key: str) -> Any:
        shard = self.route(key)
        if shard is None or not shard.connected:
            raise ConnectionError(f"no master serving {key!r} is reachable")
        return shard.client


class RoutedScript:
    """A script run on the master of its first key (or queued on a ``Batch``)."""

    def __init__(self, router: Router, script: Any) -> None:
        self._router = router
        self._script = script

    async def __call__(
        self,
        keys: Sequence[str] = (),
        args: Iterable[Any] = (),
        client: Any = None,
    ) -> Any:
        if isinstance(client, Batch):
            client = client.on(keys[0], keys[0])
        elif client is None:
            client = self._router.client_for(keys[0])
        return await self._script(keys=list(keys), args=list(args), client=client)


class Batch:
    """One writer pipeline, split into one pipeline per master (see the module doc)."""

    def __init__(self, router: Router) -> None:
        self._router = router
        # Per segment: shard name -> (shard, its pipeline, commands queued on it).
        self._segments: list[dict[str, list[Any]]] = [{}]
        self._where: dict[str, str] = {}  # channel or key -> master, in this segment
        self._order: list[tuple[int, str]] = []  # per command: (segment, shard name)

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for segment in self._segments:
            for _, pipe, _ in segment.values():
                await pipe.reset()

    def on(self, name: str, key: str) -> Any:
        """The pipeline for one command about ``name`` (a channel or a presence key)
        on ``key``'s master; the caller queues exactly one command on it."""
        shard = self._router.route(key)
        where = shard.name if shard is not None else ""
        if self._where.get(name, where) != where:
            # Another master has this channel's earlier command: after its answer.
            self._segments.append({})
            self._where = {}
        self._where[name] = where
        segment = self._segments[-1]
        entry = segment.get(where)
        if entry is None:
            client = shard.client if shard is not None else self._router._nowhere
            entry = segment[where] = [shard, client.pipeline(transaction=False), 0]
        entry[2] += 1
        self._order.append((len(self._segments) - 1, where))
        return entry[1]

    def publish(self, channel: str, data: bytes) -> None:
        self.on(channel, channel).execute_command("SPUBLISH", channel, data)

    def hset(self, key: str, member: str, node: str) -> None:
        self.on(key, key).hset(key, member, node)

    async def execute(self, raise_on_error: bool = False) -> list[Any]:
        """Every command's reply (or error), in the order queued."""
        del raise_on_error  # errors are always returned, one per command
        answers: dict[tuple[int, str], Iterator[Any]] = {}
        for index, segment in enumerate(self._segments):
            names = list(segment)
            replies = await asyncio.gather(*(self._run(*segment[n]) for n in names))
            for name, reply in zip(names, replies, strict=True):
                answers[index, name] = iter(reply)
        return [next(iter_) for iter_ in (answers[where] for where in self._order)]

    async def _run(self, shard: Shard | None, pipe: Any, count: int) -> list[Any]:
        if shard is None or not shard.connected:
            name = shard.name if shard is not None else "no master"
            return [ConnectionError(f"{name} is unreachable")] * count
        try:
            replies = await asyncio.wait_for(
                pipe.execute(raise_on_error=False), self._router._timeout
            )
        except asyncio.CancelledError:
            raise
        except _ERRORS as exc:
            self._router._failed(shard, exc)
            # Named, for the writer's log: which master, and why.
            failure = ConnectionError(f"{shard.name}: {str(exc) or type(exc).__name__}")
            return [failure] * count
        moved = next((r for r in replies if isinstance(r, MovedError)), None)
        if moved is not None:
            self._router._failed(shard, moved)
        return list(replies)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
