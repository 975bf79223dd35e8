"""Presence on NATS: two JetStream key-value buckets, written in order by one task.

``<p>_presence`` holds one entry per member (key ``<presence key>.<member>``, escaped;
value: the node id and the member's name), ``<p>_nodes`` one entry per node, which
expires ``presence_ttl`` seconds after it was written (the bucket's TTL, set by the
first node to make it). Each node writes its own entry every third of that; a reader
skips (and deletes) the members of nodes whose entry has expired, so the members of a
crashed worker disappear within ``presence_ttl`` seconds, as with Redis.

Writes are queued and written in order by ``write()`` (a batch in flight at once: one
connection keeps them in order); a restore of everything (after a reconnection, or
when this node's entry had expired) takes its place in the same queue, so a removal
made meanwhile is not undone. Both buckets are kept in memory: every node writes its
presence again after a server restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)

from ...errors import BrokerUnavailable
from . import subjects

__all__ = ["KvPresence"]

logger = logging.getLogger("gobstopper.broker")

_ERRORS = (NatsError, OSError, asyncio.TimeoutError)


class KvPresence:
    """One node's presence in NATS key-value buckets (see the module's docstring).

    Args:
        prefix: the buckets' prefix (``subjects.prefix_token``).
        replicas: copies of each bucket in a JetStream cluster.
        presence_ttl: seconds after which a silent node's members are gone.
        timeout: seconds any single request may take.
        url: the broker's URL without its password, for errors.
        connected: whether the node's NATS connection is up now.
    """

    def __init__(
        self,
        *,
        prefix: str,
        replicas: int,
        presence_ttl: float,
        timeout: float,
        url: str,
        connected: Callable[[], bool],
    ) -> None:
        self.node_id = ""  # set by the broker as it starts
        self._p = prefix
        self._replicas = replicas
        self.presence_ttl = presence_ttl
        self._timeout = timeout
        self._url = url
        self._connected = connected
        self._members_kv: Any = None
        self._nodes_kv: Any = None
        self._members: dict[str, set[str]] = {}  # this node's presence, key -> members
        self._unwritten: dict[tuple[str, str], bool] = {}  # (key, member) -> add?
        self._writes: asyncio.Queue[tuple[str, str, bool] | asyncio.Future[None]]
        self._writes = asyncio.Queue()
        self._queued = 0  # presence writes (and restores) queued, since start
        self._done = 0  # ... and written or failed
        self._advanced = asyncio.Event()
        self._liveness: int | None = None  # the revision of this node's liveness entry
        self._ttl = presence_ttl  # the nodes bucket's: the first node to make it chose

    async def buckets(self, js: Any) -> None:
        """Find or make the presence buckets (in memory: presence is written again by
        every node after a server restart)."""
        self._members_kv = await _bucket(
            js,
            KeyValueConfig(
                bucket=f"{self._p}_presence",
                history=1,
                storage=StorageType.MEMORY,
                replicas=self._replicas,
            ),
        )
        self._nodes_kv = await _bucket(
            js,
            KeyValueConfig(
                bucket=f"{self._p}_nodes",
                history=1,
                ttl=self.presence_ttl,
                storage=StorageType.MEMORY,
                replicas=self._replicas,
            ),
        )
        status = await self._nodes_kv.status()
        ttl = float(status.ttl or 0) or self.presence_ttl
        if abs(ttl - self._ttl) > 1e-3:
            # Made by a node with another GOBSTOPPER_PRESENCE_TTL: live by the bucket's,
            # or this node's entry would expire between two refreshes.
            logger.warning(
                "broker: presence entries expire after %.3gs (set when the bucket %s was "
                "made), not GOBSTOPPER_PRESENCE_TTL=%.3g",
                ttl,
                status.bucket,
                self.presence_ttl,
            )
            self._ttl = ttl

    def add(self, key: str, member: str) -> None:
        """``Broker.presence_add``: queued, written in order."""
        self._members.setdefault(key, set()).add(member)
        self._queue(key, member, True)

    def remove(self, key: str, member: str) -> None:
        """``Broker.presence_remove``: queued, written in order."""
        members = self._members.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._members[key]
        self._queue(key, member, False)

    def _queue(self, key: str, member: str, add: bool) -> None:
        self._unwritten[(key, member)] = add
        self._queued += 1
        self._writes.put_nowait((key, member, add))

    async def restore(self) -> None:
        """Write this node's presence again, in order with its other presence writes (a
        removal made meanwhile is not undone by a stale write of the member).

        Raises:
            BrokerUnavailable: NATS did not take it; nothing is left half-known (the
                next restore writes everything again).
        """
        done = asyncio.get_running_loop().create_future()
        self._queued += 1
        self._writes.put_nowait(done)
        await done

    async def write(self) -> None:
        """Write presence changes in order (each in flight together with the ones queued
        behind it: one connection keeps them in order), and restores where they come."""
        while True:
            item = await self._writes.get()
            if isinstance(item, asyncio.Future):
                try:
                    await self._restore_presence()
                except _ERRORS as exc:
                    if not item.done():
                        item.set_exception(BrokerUnavailable(self._url, str(exc)))
                else:
                    if not item.done():
                        item.set_result(None)
                self._progress(1)
                continue
            batch = [item]
            while len(batch) < 512 and not self._writes.empty():
                if isinstance(self._writes._queue[0], asyncio.Future):  # type: ignore[attr-defined]
                    break  # a restore goes alone, in its place
                batch.append(self._writes.get_nowait())  # type: ignore[arg-type]
            if self._connected():
                results = await asyncio.gather(
                    *(self._write(k, m, add) for k, m, add in batch), return_exceptions=True
                )
                for (key, member, add), result in zip(batch, results, strict=True):
                    if result is None and self._unwritten.get((key, member)) is add:
                        del self._unwritten[(key, member)]
            # What is not written is written again on reconnection (_restore_presence).
            self._progress(len(batch))

    def _progress(self, count: int) -> None:
        self._done += count
        self._advanced.set()

    async def _write(self, key: str, member: str, add: bool) -> None:
        name = subjects.kv_key(key, member)
        kv = self._members_kv
        if add:
            await asyncio.wait_for(kv.put(name, _entry(self.node_id, member)), self._timeout)
        else:
            await self._delete_if_owner(name, self.node_id)

    async def _delete_if_owner(self, name: str, node: str) -> None:
        """Delete a member's entry if ``node`` still owns it (another node may have
        written it since)."""
        kv = self._members_kv
        try:
            entry = await asyncio.wait_for(kv.get(name), self._timeout)
        except KeyNotFoundError:
            return
        if _owner(entry.value) == node:
            with contextlib.suppress(KeyWrongLastSequenceError):  # written again: it stays
                await asyncio.wait_for(kv.delete(name, last=entry.revision), self._timeout)

    async def drained(self) -> None:
        """Wait until what this node queued so far is written (or failed): a presence
        read sees this node's own joins and leaves, however many come after."""
        target = self._queued
        deadline = asyncio.get_running_loop().time() + self._timeout
        while self._done < target:
            self._advanced.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return  # read anyway: the writer is stuck behind an unanswered request
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)

    async def read(self, key: str) -> dict[str, str]:
        """``Broker.presence``: the live members, once this node's own writes are in."""
        await self.drained()
        try:
            members = await self._list(key)
            alive = await self._alive(set(members.values()))
            dead = {m: n for m, n in members.items() if n not in alive}
            for member, node in dead.items():
                # Members of crashed nodes: gone for every reader from now on.
                await self._delete_if_owner(subjects.kv_key(key, member), node)
            return {m: n for m, n in members.items() if n in alive}
        except _ERRORS as exc:
            raise BrokerUnavailable(self._url, str(exc) or type(exc).__name__) from exc

    async def node_of(self, key: str, member: str) -> str | None:
        """``Broker.presence_of``."""
        await self.drained()
        try:
            kv = self._kv(self._members_kv)
            try:
                entry = await asyncio.wait_for(kv.get(subjects.kv_key(key, member)), self._timeout)
            except KeyNotFoundError:
                return None
            node = _owner(entry.value)
            return node if await self._alive({node}) else None
        except _ERRORS as exc:
            raise BrokerUnavailable(self._url, str(exc) or type(exc).__name__) from exc

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        """``Broker.live_nodes``."""
        try:
            return await self._alive(set(nodes))
        except _ERRORS as exc:
            raise BrokerUnavailable(self._url, str(exc) or type(exc).__name__) from exc

    async def _list(self, key: str) -> dict[str, str]:
        """The members under ``key`` as written (live or not): member -> node."""
        try:
            return await self._watch(key)
        except NatsTimeoutError:
            # nats-py's watcher may miss the end of the first values when entries change
            # as it starts (a member leaving): asked once more.
            return await self._watch(key)

    async def _watch(self, key: str) -> dict[str, str]:
        kv = self._kv(self._members_kv)
        prefix = subjects.kv_prefix(key) + "."
        # A consumer per read: gone by itself soon after (not JetStream's 5 minutes).
        watching = kv.watch(prefix + "*", ignore_deletes=True, inactive_threshold=2.0)
        watcher = await asyncio.wait_for(watching, self._timeout)
        members: dict[str, str] = {}
        try:
            while True:
                entry = await watcher.updates(self._timeout)
                if entry is None:
                    break
                if entry.value:
                    text = bytes(entry.value).decode("utf-8", "surrogatepass")
                    node, _, member = text.partition("\n")
                    members[member] = node
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
        return members

    async def _alive(self, nodes: set[str]) -> set[str]:
        kv = self._kv(self._nodes_kv)

        async def live(node: str) -> bool:
            if node == self.node_id:
                return True
            try:
                await asyncio.wait_for(kv.get(subjects.token(node)), self._timeout)
            except KeyNotFoundError:
                return False
            return True

        flags = await asyncio.gather(*(live(n) for n in sorted(nodes)))
        return {n for n, ok in zip(sorted(nodes), flags, strict=True) if ok}

    def _kv(self, kv: Any) -> Any:
        if kv is None or not self._connected():
            raise BrokerUnavailable(self._url, "not connected")
        return kv

    async def heartbeat(self) -> None:
        name = subjects.token(self.node_id)
        while True:
            period = max(0.05, self._ttl / 3)
            kv = self._nodes_kv
            if self._connected() and kv is not None:
                try:
                    if self._liveness is None:
                        self._liveness = await asyncio.wait_for(kv.put(name, b"1"), self._timeout)
                    else:
                        # Refused when the entry expired meanwhile (a stalled loop, an
                        # outage): other nodes may have dropped our members.
                        self._liveness = await asyncio.wait_for(
                            kv.update(name, b"1", last=self._liveness), self._timeout
                        )
                except APIError:
                    logger.warning("broker: this node's presence had expired; restoring it")
                    self._liveness = None
                    with contextlib.suppress(BrokerUnavailable):  # tried again next period
                        await self.restore()
                except _ERRORS as exc:
                    self._liveness = None
                    logger.debug("broker: heartbeat failed: %s", exc)
            await asyncio.sleep(period)

    async def _restore_presence(self) -> None:
        """Write this node's liveness and members again, and the removals that did not
        reach NATS (after a connection or a loss)."""
        kv, nodes = self._members_kv, self._nodes_kv
        if kv is None or nodes is None:
            return
        self._liveness = await asyncio.wait_for(
            nodes.put(subjects.token(self.node_id), b"1"), self._timeout
        )
        pending = dict(self._unwritten)
        writes = [(k, m, True) for k, members in self._members.items() for m in members]
        writes += [(k, m, False) for (k, m), add in pending.items() if not add]
        for start in range(0, len(writes), 512):
            chunk = writes[start : start + 512]
            await asyncio.gather(*(self._write(k, m, add) for k, m, add in chunk))
        for item, add in pending.items():  # written now, unless changed meanwhile
            if self._unwritten.get(item) is add:
                del self._unwritten[item]

    async def withdraw(self) -> None:
        """This node's members and liveness entry, deleted (stopping)."""
        writes = [
            self._write(key, member, False)
            for key, members in self._members.items()
            for member in members
        ]
        await asyncio.wait_for(asyncio.gather(*writes), self._timeout * 2)
        await asyncio.wait_for(self._nodes_kv.delete(subjects.token(self.node_id)), self._timeout)


async def _bucket(js: Any, config: Any) -> Any:
    """The key-value bucket of ``config``, made if missing (as it is, if another node
    made it with other settings)."""
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(config)
    except Exception:
        return await js.key_value(config.bucket)


def _entry(node: str, member: str) -> bytes:
    """A presence entry's value: the node, and the member's name (its key may be a
    digest of it)."""
    return f"{node}\n{member}".encode("utf-8", "surrogatepass")


def _owner(value: bytes | None) -> str:
    return bytes(value or b"").decode("utf-8", "surrogatepass").partition("\n")[0]
