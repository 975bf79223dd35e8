"""The Redis Cluster broker: the Redis broker's work spread over the masters of a cluster.

Messages go through sharded pub/sub (Redis 7: ``SPUBLISH``/``SSUBSCRIBE``): a channel
lives on the master serving its slot (a CRC of ``<prefix><channel>``), only that master
carries its messages, so the load spreads over the masters by channel. (Plain
``PUBLISH`` in a cluster reaches every node over the cluster bus: it does not scale
out.) Each node holds one pub/sub connection per master, subscribed to the channels of
that master's slots, and a supervisor per connection (as ``RedisBroker`` has one):
when a master goes away, its channels stop, the others go on; when it is back, its
subscriptions and this node's presence on it are restored. Meanwhile publishing to its
channels raises ``BrokerUnavailable`` (counted in ``health().dropped``). The slot table
comes from ``CLUSTER SLOTS`` of any master the URL names, and is read again after a
connection is lost or a master answers ``MOVED`` (a failover, a resharding).

Writes (publishes, presence) go through the same ordered ``Writer`` as on one Redis; its
pipelines split by master (``slots.py``), so a node's messages on one channel keep
their order.

Presence: the hash ``<prefix>presence:<key>`` lives on its key's slot, as any key.
Each node keeps its liveness key on every master, with a hash tag of that master
(``<prefix>node:{<tag>}:<node id>``): a presence read asks the master of the presence
key alone (the hash, then the liveness of its nodes in one ``MGET``), so presence on
one master does not depend on another. A master that comes back empty is told this
node's members on it again (the heartbeat finds its liveness key gone).

History: a stream's keys share a slot through a hash tag on the stream name
(``<prefix>history:{<stream>}``, ``<prefix>history-meta:{<stream>}``), and the append
script runs on that master. The publication has to reach every node subscribed to the
channel in offset order, but a script may touch only its own slot, so it cannot
``SPUBLISH`` to the channel (a different slot), and the subscribers of a channel do not
know which streams publish to it (so they cannot listen on a channel of the stream's
slot). The script therefore sends a plain ``PUBLISH``, which the cluster propagates to
every node, and each node subscribes with ``SUBSCRIBE`` as well as ``SSUBSCRIBE`` to each
of its channels, on the connection to the channel's master. The trade-off:
publications with history cross the cluster bus to every master (as on an unsharded
cluster), the others stay on one master. Offsets stay in order (one script at a time
on the stream's master, one bus link from it to each master). A plain message a node
publishes before a publication with history on the same channel arrives before it
(the writer waits for the first's answer); one published right after it may overtake
it when stream and channel live on different masters, since the bus hop is not ordered
with a direct ``SPUBLISH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MovedError, RedisError

from ..._util import Backoff, cancel_and_wait
from ...errors import BrokerUnavailable
from ...history.base import Position
from ..base import Broker, BrokerHealth, MessageHandler
from ..cluster_url import parse_cluster_url
from .broker import _retrieved, _text, deliver, listen
from .history import DEFAULT_META_TTL, RedisHistory
from .slots import Router, Shard, SlotMap, read_slot_map, tag_for
from .writer import HDEL_IF_OWNER, Writer

__all__ = ["ClusterHistory", "RedisClusterBroker", "redact_cluster"]

logger = logging.getLogger("gobstopper.broker")

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
_SUBSCRIBE_WAIT_S = 2.0
# The slot table is read again at most this often (a lost master makes every node ask).
_REFRESH_EVERY_S = 1.0
_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def redact_cluster(url: str) -> str:
    """A cluster ``url`` without its password, for logs and health reports."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hosts}{slash}{path}"


class ClusterHistory(RedisHistory):
    """``RedisHistory`` on a cluster: a stream's keys share a slot (a hash tag on the
    stream's name), so that its scripts run on one master."""

    def keys(self, stream: str) -> list[str]:
        return [f"{self.prefix}history:{{{stream}}}", f"{self.prefix}history-meta:{{{stream}}}"]


class RedisClusterBroker(Broker):
    """Publish/subscribe and presence on a Redis Cluster (Redis 7 or later).

    Args:
        url: ``redis+cluster://[[user]:password@]host:port[,host:port...]`` or
            ``rediss+cluster://`` (TLS): some masters, any reachable one is enough.
        prefix: the start of every channel and key name, to share one cluster.
        presence_ttl: seconds after which a silent node's members are gone.
        timeout: seconds any single Redis operation may take.
        max_pending: commands waiting for the writer before ``publish`` refuses more.
        history_meta_ttl: see ``RedisHistory``.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gobstopper:",
        presence_ttl: float = 10.0,
        timeout: float = 2.0,
        max_pending: int = 100_000,
        history_meta_ttl: float = DEFAULT_META_TTL,
    ) -> None:
        parsed = parse_cluster_url(url)
        self.url = url
        self.node_id = uuid.uuid4().hex
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self._seeds = [f"{host}:{port}" for host, port in parsed.nodes]
        self._options: dict[str, Any] = {
            "username": parsed.username,
            "password": parsed.password,
            "ssl": parsed.tls,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "health_check_interval": 5,
            "socket_keepalive": True,
            # No retries inside redis-py (its default since 6.0: three, a second apart and
            # more): a command to a master that is gone must fail at once, not hold up the
            # writer's pipelines to the other masters until the timeout. The supervisors
            # reconnect.
            "retry": Retry(NoBackoff(), 0),
        }
        self._timeout = timeout
        self._slots: SlotMap | None = None
        self._shards: dict[str, Shard] = {}
        self._router = Router(self._route, self._shard_failed, timeout)
        self._hdel_script: Any = self._router.register_script(HDEL_IF_OWNER)
        # A batch may wait for one master, then another (see slots.Batch).
        self._writer = Writer(
            self._router,
            self._hdel_if_owner,
            redact_cluster(url),
            2 * timeout,
            max_pending,
            unmade=self._removal_unmade,
        )
        self._history = ClusterHistory(
            self._router,
            prefix=prefix,
            url=redact_cluster(url),
            timeout=timeout,
            meta_ttl=history_meta_ttl,
        )
        self.history = self._history
        self._handler: MessageHandler | None = None
        self._channels: set[str] = set()  # wanted, without the prefix
        self._members: dict[str, set[str]] = {}  # this node's presence, key -> members
        # Removals whose master was down, or failed on the way: made when it is back (or
        # by the next heartbeat to it), (key, member).
        self._stale: set[tuple[str, str]] = set()
        # Subscriptions awaiting Redis's confirmation: full name -> (the pub/sub
        # connection it was sent on, its waiter). Only that connection settles it: an
        # old one closing must not report a new one's subscription as made.
        self._confirm: dict[str, tuple[Any, asyncio.Future[None]]] = {}
        self._refresh = asyncio.Event()
        self._first: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._connected = False
        self._since = time.time()
        self._last_error: str | None = None
        self._dropped = 0

    # -- names and routes ------------------------------------------------------------------

    def _channel(self, name: str) -> str:
        return self.prefix + name

    def _presence_key(self, key: str) -> str:
        return f"{self.prefix}presence:{key}"

    def _node_key(self, shard: Shard, node: str) -> str:
        return f"{self.prefix}node:{shard.tag}:{node}"

    def _route(self, key: str) -> Shard | None:
        if self._slots is None:
            return None
        owner = self._slots.owner(key)
        return self._shards.get(owner) if owner is not None else None

    def _up(self, key: str) -> Shard:
        """The master of ``key``, if it can be written to now.

        Raises:
            BrokerUnavailable: it cannot.
        """
        shard = self._route(key)
        if shard is None or not shard.connected:
            where = shard.name if shard is not None else "no master"
            reason = (shard and shard.last_error) or self._last_error or "not connected"
            raise BrokerUnavailable(redact_cluster(self.url), f"{where}: {reason}")
        return shard

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, handler: MessageHandler) -> None:
        # A new id per start: processes forked from one that created the broker must
        # not share it.
        self.node_id = self._writer.node_id = uuid.uuid4().hex
        self._handler = handler
        self._stopping = False
        self._refresh = asyncio.Event()
        first = self._first = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.ensure_future(self._topology()),
            asyncio.ensure_future(self._writer.run()),
            asyncio.ensure_future(self._heartbeat()),
        ]
        # As RedisBroker: wait a little for every master, never fail here.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(first), self._timeout)

    async def stop(self) -> None:
        self._stopping = True
        await self._writer.written()
        tasks = self._tasks + [s.task for s in self._shards.values() if s.task is not None]
        await cancel_and_wait(tasks)
        self._tasks = []
        self._writer.fail_calls("the broker stopped")
        for shard in self._shards.values():
            if shard.connected:
                await self._withdraw(shard)
            shard.connected = False
            with contextlib.suppress(*_ERRORS):
                await shard.client.aclose()
        self._shards, self._slots = {}, None
        self._handler = None
        self._update()

    async def _withdraw(self, shard: Shard) -> None:
        """Remove this node's members and liveness from ``shard`` (on stop)."""
        try:
            async with shard.client.pipeline(transaction=False) as pipe:
                for key, members in self._members.items():
                    full = self._presence_key(key)
                    if members and self._route(full) is shard:
                        await self._hdel_if_owner(full, sorted(members), self.node_id, pipe)
                pipe.delete(self._node_key(shard, self.node_id))
                await asyncio.wait_for(pipe.execute(), self._timeout)
        except Exception as exc:
            logger.warning(
                "broker: could not withdraw presence from %s on stop: %s", shard.name, exc
            )

    # -- publishing and presence -----------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> None:
        full = self._channel(channel)
        try:
            self._up(full)
        except BrokerUnavailable:
            self._dropped += 1
            raise
        self._writer.put("publish", full, data)

    async def publish_with_history(
        self,
        channel: str,
        head: bytes,
        stream: str,
        data: bytes,
        size: int,
        ttl: float,
        wait: bool = True,
    ) -> Position | None:
        """See ``Broker.publish_with_history`` and the module doc: the script runs on the
        stream's master and publishes to every node; queued on the writer in order.

        Raises:
            BrokerUnavailable: the stream's master cannot be reached, or failed with the
                script in flight; counted in ``health().dropped``.
        """
        full = self._channel(channel)
        history = self._history
        key = history.keys(stream)[0]
        try:
            self._up(key)
        except BrokerUnavailable:
            self._dropped += 1
            raise

        def run(batch: Any) -> Any:
            pipe = batch.on(full, key)
            return history.run_append(pipe, stream, data, size, ttl, (full, head))

        call = self._writer.call(full, run, len(head) + len(data))
        if not wait:
            call.reply.add_done_callback(_retrieved)
            return None
        return history.position(await call.reply)

    def presence_add(self, key: str, member: str) -> None:
        self._members.setdefault(key, set()).add(member)
        self._stale.discard((key, member))
        full = self._presence_key(key)
        shard = self._route(full)
        if shard is None or not shard.connected:
            # Written from self._members when its master is back; an older removal
            # still queued must not undo it.
            self._writer.forget(("hdel", full, member))
            return
        with contextlib.suppress(BrokerUnavailable):
            self._writer.put("hset", full, member)

    def presence_remove(self, key: str, member: str) -> None:
        members = self._members.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._members[key]
        full = self._presence_key(key)
        shard = self._route(full)
        if shard is None or not shard.connected:
            self._stale.add((key, member))  # made when its master is back
            return
        with contextlib.suppress(BrokerUnavailable):
            self._writer.put("hdel", full, member)

    def _hdel_if_owner(self, key: str, members: list[str], node: str, client: Any) -> Any:
        return self._hdel_script(keys=[key], args=[*members, node], client=client)

    def _removal_unmade(self, full: str, member: str) -> None:
        """The writer's removal of ``member`` from presence key ``full`` failed (its
        master's connection dropped with it queued or in flight): make it later."""
        key = full[len(self._presence_key("")) :]
        if member in self._members.get(key, ()):
            return  # added again since: the removal no longer stands
        self._stale.add((key, member))

    async def presence(self, key: str) -> dict[str, str]:
        await self._writer.written()
        full = self._presence_key(key)
        shard = self._up(full)
        try:
            client = shard.client
            raw = await asyncio.wait_for(client.hgetall(full), self._timeout)
            members = {_text(m): _text(n) for m, n in raw.items()}
            nodes = sorted(set(members.values()))
            if not nodes:
                return {}
            # One slot (the master's tag): one MGET.
            names = [self._node_key(shard, n) for n in nodes]
            alive = await asyncio.wait_for(client.mget(names), self._timeout)
            dead = {n for n, flag in zip(nodes, alive, strict=True) if flag is None}
            for node in dead:
                gone = sorted(m for m, n in members.items() if n == node)
                await asyncio.wait_for(self._hdel_if_owner(full, gone, node, client), self._timeout)
            return {m: n for m, n in members.items() if n not in dead}
        except _ERRORS as exc:
            raise BrokerUnavailable(redact_cluster(self.url), _reason(exc)) from exc

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        names = sorted(set(nodes))
        if not names:
            return set()
        # Every node keeps its liveness on every master: one MGET on any that is up.
        shard = next((s for s in self._shards.values() if s.connected), None)
        if shard is None:
            raise BrokerUnavailable(redact_cluster(self.url), self._last_error or "not connected")
        try:
            keys = [self._node_key(shard, n) for n in names]
            alive = await asyncio.wait_for(shard.client.mget(keys), self._timeout)
        except _ERRORS as exc:
            raise BrokerUnavailable(redact_cluster(self.url), _reason(exc)) from exc
        return {n for n, flag in zip(names, alive, strict=True) if flag is not None}

    async def presence_of(self, key: str, member: str) -> str | None:
        await self._writer.written()
        full = self._presence_key(key)
        shard = self._up(full)
        try:
            raw = await asyncio.wait_for(shard.client.hget(full, member), self._timeout)
            if raw is None:
                return None
            node = _text(raw)
            alive = await asyncio.wait_for(
                shard.client.exists(self._node_key(shard, node)), self._timeout
            )
            return node if alive else None
        except _ERRORS as exc:
            raise BrokerUnavailable(redact_cluster(self.url), _reason(exc)) from exc

    async def _heartbeat(self) -> None:
        period = max(0.05, self.presence_ttl / 3)
        ttl_ms = max(1, int(self.presence_ttl * 1000))
        while True:
            shards = [s for s in self._shards.values() if s.connected]
            await asyncio.gather(*(self._beat(shard, ttl_ms) for shard in shards))
            await asyncio.sleep(period)

    async def _beat(self, shard: Shard, ttl_ms: int) -> None:
        try:
            previous = await asyncio.wait_for(
                shard.client.set(self._node_key(shard, self.node_id), b"1", px=ttl_ms, get=True),
                self._timeout,
            )
            if previous is None:
                # Expired (a stalled loop), or the master came back empty: other nodes
                # may have removed our members there. Write them again.
                logger.warning(
                    "broker: this node's presence on %s was gone; restoring it", shard.name
                )
                await self._restore_presence(shard)
            else:
                self._retry_stale(shard)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("broker: heartbeat to %s failed: %s", shard.name, exc)

    def _retry_stale(self, shard: Shard) -> None:
        """Queue the removals still waiting for ``shard`` (one may have failed after its
        connection was already restored): on the writer, so that they keep their order
        with later additions; one that fails again comes back here."""
        for key, member in [(k, m) for k, m in self._stale if self._on(shard, k)]:
            try:
                self._writer.put("hdel", self._presence_key(key), member)
            except BrokerUnavailable:
                return  # the queue is full: the next heartbeat tries again
            self._stale.discard((key, member))

    def _on(self, shard: Shard, key: str) -> bool:
        return self._route(self._presence_key(key)) is shard

    async def _restore_presence(self, shard: Shard) -> None:
        """Write this node's liveness and members on ``shard`` again, and make the
        removals that waited for it."""
        async with shard.client.pipeline(transaction=False) as pipe:
            ttl_ms = max(1, int(self.presence_ttl * 1000))
            pipe.set(self._node_key(shard, self.node_id), b"1", px=ttl_ms)
            for key, members in self._members.items():
                full = self._presence_key(key)
                if members and self._route(full) is shard:
                    pipe.hset(full, mapping=dict.fromkeys(members, self.node_id))
            stale = [(k, m) for k, m in self._stale if self._on(shard, k)]
            for key, member in stale:
                await self._hdel_if_owner(self._presence_key(key), [member], self.node_id, pipe)
            await asyncio.wait_for(pipe.execute(), self._timeout)
        self._stale.difference_update(stale)

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        full = self._channel(channel)
        if channel in self._channels:
            _, pending = self._confirm.get(full, (None, None))
            if pending is not None and not pending.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pending), _SUBSCRIBE_WAIT_S)
            return
        self._channels.add(channel)
        shard = self._route(full)
        pubsub = shard.pubsub if shard is not None else None
        if pubsub is None:
            return  # subscribed when its master's connection is (back) up
        waiter = asyncio.get_running_loop().create_future()
        self._confirm[full] = (pubsub, waiter)
        try:
            # The listener reads the confirmations; SUBSCRIBE's comes last.
            await pubsub.ssubscribe(full)
            await pubsub.subscribe(full)
            await asyncio.wait_for(asyncio.shield(waiter), _SUBSCRIBE_WAIT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("broker: subscribe %s deferred to reconnection: %s", full, exc)

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        full = self._channel(channel)
        shard = self._route(full)
        pubsub = shard.pubsub if shard is not None else None
        if pubsub is not None:
            try:
                await pubsub.sunsubscribe(full)
                await pubsub.unsubscribe(full)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a stray subscription is harmless: nobody is here
                logger.debug("broker: unsubscribe %s: %s", channel, exc)

    def _wanted(self, shard: Shard) -> set[str]:
        """The full names of the wanted channels that ``shard`` serves."""
        return {f for f in map(self._channel, self._channels) if self._route(f) is shard}

    # -- the slot table --------------------------------------------------------------------

    async def _topology(self) -> None:
        """Read the slot table, then again whenever asked (a master lost or MOVED)."""
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        while True:
            try:
                slots = await self._read_slots()
            except (*_ERRORS, LookupError) as exc:
                self._last_error = _reason(exc)
                if self._slots is None:
                    logger.error("broker: no master of %s answers (%s)", self._where(), exc)
                    await backoff.wait()
                    continue
                logger.debug("broker: could not read the slot table again: %s", exc)
            else:
                if slots != self._slots:
                    self._apply(slots)
            backoff.reset()
            self._refresh.clear()
            await self._refresh.wait()
            await asyncio.sleep(_REFRESH_EVERY_S)

    async def _read_slots(self) -> SlotMap:
        """The slot table, from the first master that answers: known ones first."""
        failure: BaseException = LookupError("no address")
        for address in [*self._shards, *self._seeds]:
            host, _, port = address.rpartition(":")
            client = aioredis.Redis(host=host, port=int(port), **self._options)
            try:
                slots = await asyncio.wait_for(read_slot_map(client), self._timeout)
                if slots.masters:
                    return slots
                failure = LookupError(f"{address} serves no slots yet")
            except _ERRORS as exc:
                failure = exc
            finally:
                with contextlib.suppress(*_ERRORS):
                    await client.aclose()
        raise failure

    def _apply(self, slots: SlotMap) -> None:
        """Follow a new slot table: a supervised connection per master it names.

        Only the masters whose slots changed (or that are new) connect afresh: the
        others keep their connection, subscriptions and queued writes, so that one
        master's failover or resharding does not interrupt the rest."""
        before = self._slots.served() if self._slots is not None else {}
        self._slots = slots
        moved = []
        for name, served in slots.served().items():
            shard = self._shards.get(name)
            if shard is None:
                host, _, port = name.rpartition(":")
                client = aioredis.Redis(host=host, port=int(port), **self._options)
                shard = self._shards[name] = Shard(name, client, tag_for(slots, name))
            elif before.get(name) == served and shard.task is not None:
                continue  # the same channels and keys: nothing to redo
            else:
                shard.tag = tag_for(slots, name)
                moved.append(name)
                if shard.task is not None:  # its channels moved: start afresh
                    shard.task.cancel()
                    shard.connected = False
            shard.task = asyncio.ensure_future(self._listen(shard))
        gone = [n for n in self._shards if n not in slots.masters]
        for name in gone:
            shard = self._shards.pop(name)
            if shard.task is not None:
                shard.task.cancel()
            shard.connected = False
        if moved or gone:
            logger.warning(
                "broker: the cluster's slots moved; subscribing again on %s; no longer a "
                "master: %s",
                ", ".join(moved) or "none",
                ", ".join(gone) or "none",
            )
        self._update()

    # -- one supervised pub/sub connection per master --------------------------------------

    async def _listen(self, shard: Shard) -> None:
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        lost_at: float | None = None
        while not self._stopping:
            pubsub = shard.client.pubsub()
            try:
                await asyncio.wait_for(shard.client.ping(), self._timeout)
                wanted = self._wanted(shard)
                await asyncio.wait_for(self._subscribe_all(shard, pubsub, wanted), self._timeout)
                shard.pubsub = pubsub
                missed = self._wanted(shard) - wanted
                if missed:
                    await asyncio.wait_for(self._subscribe_all(None, pubsub, missed), self._timeout)
                await self._restore_presence(shard)
                self._shard_up(shard, lost_at, len(wanted))
                lost_at = None
                backoff.reset()
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect rather than stop listening
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.error(
                        "broker: connection to master %s lost or refused (%s); its channels "
                        "are unreachable until it is back, the others go on",
                        shard.name,
                        _reason(exc),
                    )
                self._shard_down(shard, exc)
            finally:
                if shard.pubsub is pubsub:
                    shard.pubsub = None
                # Its subscriptions are made on the next connection: their callers
                # stop waiting for this one.
                for full in [f for f, (p, _) in self._confirm.items() if p is pubsub]:
                    _, waiter = self._confirm.pop(full)
                    if not waiter.done():
                        waiter.set_result(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), self._timeout)
            if self._stopping:
                break
            await backoff.wait()

    async def _subscribe_all(self, shard: Shard | None, pubsub: Any, channels: set[str]) -> None:
        if shard is not None:
            # A channel of its own (never published to), so that the connection exists
            # and is checked even before any room has a member here.
            await pubsub.subscribe(f"{self.prefix}node-control:{self.node_id}:{shard.name}")
        # One SSUBSCRIBE per channel: several in one must share a slot.
        for full in sorted(channels):
            await pubsub.ssubscribe(full)
        if channels:
            await pubsub.subscribe(*sorted(channels))

    async def _read(self, pubsub: Any) -> None:
        async for message in listen(pubsub, self._timeout):
            kind = message["type"]
            if kind in ("smessage", "message"):
                deliver(self._handler, len(self.prefix), message)
            elif kind == "subscribe":
                full = _text(message["channel"])
                sent, waiter = self._confirm.get(full, (None, None))
                if sent is pubsub and waiter is not None:
                    del self._confirm[full]
                    if not waiter.done():
                        waiter.set_result(None)

    # -- state -----------------------------------------------------------------------------

    def _shard_up(self, shard: Shard, lost_at: float | None, channels: int) -> None:
        if lost_at is not None:
            shard.reconnects += 1
            logger.warning(
                "broker: reconnected to master %s after %.1fs; subscribed again to %d channel(s)",
                shard.name,
                time.monotonic() - lost_at,
                channels,
            )
        else:
            logger.info("broker: connected to master %s", shard.name)
        shard.connected, shard.since, shard.last_error = True, time.time(), None
        self._update()

    def _shard_down(self, shard: Shard, exc: BaseException) -> None:
        reason = f"{shard.name}: {_reason(exc)}"
        shard.last_error = self._last_error = reason
        if shard.connected:
            shard.connected, shard.since = False, time.time()
        self._update()
        # Perhaps a failover or a resharding: read the slot table again.
        self._refresh.set()

    def _shard_failed(self, shard: Shard, exc: BaseException) -> None:
        """A pipeline to ``shard`` failed or was redirected: its supervisor sees to the
        connection; a redirection means the slot table is stale."""
        if isinstance(exc, MovedError):
            self._refresh.set()

    def _update(self) -> None:
        shards = list(self._shards.values())
        some = any(s.connected for s in shards)
        if some != self._writer.connected:
            self._writer.connected = some
            if not some:
                self._writer.fail_calls(self._last_error or "not connected")
        if some:
            self._writer.wake()
        every = bool(shards) and all(s.connected for s in shards)
        if every != self._connected:
            self._connected, self._since = every, time.time()
        if every and self._first is not None and not self._first.done():
            self._first.set_result(None)

    def _where(self) -> str:
        return redact_cluster(self.url)

    def health(self) -> BrokerHealth:
        return BrokerHealth(
            url=redact_cluster(self.url),
            connected=self._connected,
            since=self._since,
            reconnects=sum(s.reconnects for s in self._shards.values()),
            last_error=self._last_error,
            dropped=self._dropped + self._writer.dropped,
        )


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
