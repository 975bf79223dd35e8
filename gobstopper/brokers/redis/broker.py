"""The Redis broker: rooms across Granian workers and hosts, through Redis pub/sub.

One pub/sub connection per node receives the channels it subscribes to; one task
writes everything else (publishes and presence) in order, in pipelines, on a second
connection (``writer.py``). A supervisor keeps the pub/sub connection alive: when it drops it logs,
reconnects with backoff, subscribes again to every channel still wanted and writes
this node's presence again.

Presence lives in Redis hashes (``<prefix>presence:<key>``: member -> node id), next to
a key per node (``<prefix>node:<node id>``) that the node refreshes every third of
``presence_ttl`` and that expires ``presence_ttl`` seconds after its node stops doing
so. Readers skip (and delete) the members of nodes whose key has expired, so the
members of a crashed worker disappear within ``presence_ttl`` seconds.

Channel history lives in Redis streams (``history.py``): a publication with history is
one script that appends and publishes, queued on the writer like any publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..._util import Backoff, cancel_and_wait
from ...errors import BrokerUnavailable
from ...history.base import Position
from ..base import Broker, BrokerHealth, MessageHandler
from .history import DEFAULT_META_TTL, RedisHistory
from .writer import HDEL_IF_OWNER, Writer

__all__ = ["RedisBroker", "redact"]

logger = logging.getLogger("gobstopper.broker")

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
# Pub/sub is checked with a PING of its own after this many idle seconds: a connection
# cut without a reset is found within it plus the timeout.
_IDLE_PING_S = 5.0
# A node's subscription is confirmed by Redis before join() returns, within this time.
_SUBSCRIBE_WAIT_S = 2.0
_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def redact(url: str) -> str:
    """``url`` without its password, for logs and health reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisBroker(Broker):
    """Publish/subscribe and presence on a Redis server.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://`` (TLS).
        prefix: the start of every channel and key name, to share one Redis.
        presence_ttl: seconds after which a silent node's members are gone.
        timeout: seconds any single Redis operation may take.
        max_pending: commands waiting for the writer before ``publish`` refuses more.
        history_meta_ttl: seconds a history stream's epoch and top offset outlive its
            last publication (see ``RedisHistory``).
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
        self.url = url
        self.node_id = uuid.uuid4().hex
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self._timeout = timeout
        # The health check pings an idle connection before using it: a connection cut
        # without a word (no reset) is found within it, plus the timeout.
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=5,
            socket_keepalive=True,
        )
        self._hdel_script: Any = self._client.register_script(HDEL_IF_OWNER)
        self._handler: MessageHandler | None = None
        self._channels: set[str] = set()  # wanted, without the prefix
        self._members: dict[str, set[str]] = {}  # this node's presence, key -> members
        self._pubsub: Any = None
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._writer = Writer(self._client, self._hdel_if_owner, redact(url), timeout, max_pending)
        self._history = RedisHistory(
            self._client, prefix=prefix, url=redact(url), timeout=timeout, meta_ttl=history_meta_ttl
        )
        self.history = self._history
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._connected = False
        self._since = time.time()
        self._reconnects = 0
        self._ever_connected_before = False
        self._last_error: str | None = None
        self._dropped = 0  # publishes refused while disconnected

    # -- names --------------------------------------------------------------------------

    def _channel(self, name: str) -> str:
        return self.prefix + name

    def _presence_key(self, key: str) -> str:
        return f"{self.prefix}presence:{key}"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, handler: MessageHandler) -> None:
        # A new id per start: processes forked from one that created the broker must
        # not share it (each would skip the others' messages as its own).
        self.node_id = self._writer.node_id = uuid.uuid4().hex
        self._handler = handler
        self._stopping = False
        connected = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.ensure_future(self._listen(connected)),
            asyncio.ensure_future(self._writer.run()),
            asyncio.ensure_future(self._heartbeat()),
        ]
        # Wait a little for the first connection, so that a worker that starts next to
        # a healthy Redis is connected when it takes its first client; never fail here.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(connected), self._timeout)

    async def stop(self) -> None:
        self._stopping = True
        # What was published last (e.g. goodbyes at shutdown) goes out first; then this
        # node's presence is withdrawn while the connection is still there.
        await self._writer.written()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self._writer.fail_calls("the broker stopped")
        if self._connected:
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, members in self._members.items():
                        if members:
                            await self._hdel_if_owner(
                                self._presence_key(key), sorted(members), self.node_id, pipe
                            )
                    pipe.delete(self._node_key(self.node_id))
                    await asyncio.wait_for(pipe.execute(), self._timeout)
            except Exception as exc:
                logger.warning("broker: could not withdraw presence on stop: %s", exc)
        self._handler = None
        self._set_connected(False, None)
        with contextlib.suppress(*_ERRORS):
            await self._client.aclose()

    # -- publishing and presence: one ordered writer ---------------------------------------

    async def publish(self, channel: str, data: bytes) -> None:
        if not self._connected:
            self._dropped += 1
            raise BrokerUnavailable(redact(self.url), self._last_error or "not connected")
        self._writer.put("publish", self._channel(channel), data)

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
        """See ``Broker.publish_with_history``: one script appends and publishes.

        The script alone orders a stream's publications (Redis runs one script at a
        time: offset order is publication order, across nodes). It still goes through
        the writer rather than straight to Redis, so that it keeps its place among this
        node's other writes (a broadcast to the same room published just before it
        arrives before it, as the contract promises), shares their pipelines, and is
        bounded by ``max_pending`` like them.

        Raises:
            BrokerUnavailable: Redis cannot be reached, or the connection failed with
                the script in flight (then whether it ran is unknown: delivery is at
                most once); counted in ``health().dropped``.
        """
        if not self._connected:
            self._dropped += 1
            raise BrokerUnavailable(redact(self.url), self._last_error or "not connected")
        full = self._channel(channel)
        history = self._history

        def run(pipe: Any) -> Any:
            return history.run_append(pipe, stream, data, size, ttl, (full, head))

        call = self._writer.call(full, run, len(head) + len(data))
        if not wait:
            # In order behind this node's other writes; a loss is counted as dropped.
            call.reply.add_done_callback(_retrieved)
            return None
        return history.position(await call.reply)

    def presence_add(self, key: str, member: str) -> None:
        self._members.setdefault(key, set()).add(member)
        if not self._connected:
            # A removal queued during an outage must not undo this once Redis is back.
            self._writer.forget(("hdel", self._presence_key(key), member))
        else:
            # Too many writes waiting: written again from self._members on reconnection.
            with contextlib.suppress(BrokerUnavailable):
                self._writer.put("hset", self._presence_key(key), member)

    def presence_remove(self, key: str, member: str) -> None:
        members = self._members.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._members[key]
        # Also while disconnected: queued, so that a reconnection does not leave it.
        with contextlib.suppress(BrokerUnavailable):
            self._writer.put("hdel", self._presence_key(key), member)

    def _hdel_if_owner(self, key: str, members: list[str], node: str, client: Any) -> Any:
        return self._hdel_script(keys=[key], args=[*members, node], client=client)

    async def presence(self, key: str) -> dict[str, str]:
        await self._writer.written()
        try:
            raw = await asyncio.wait_for(
                self._client.hgetall(self._presence_key(key)), self._timeout
            )
            members = {_text(m): _text(n) for m, n in raw.items()}
            nodes = sorted(set(members.values()))
            if not nodes:
                return {}
            alive = await asyncio.wait_for(
                self._client.mget([self._node_key(n) for n in nodes]), self._timeout
            )
            dead = {n for n, flag in zip(nodes, alive, strict=True) if flag is None}
            if dead:
                # Members of crashed nodes: gone for every reader from now on (unless
                # written again by a live node meanwhile).
                for node in dead:
                    gone = sorted(m for m, n in members.items() if n == node)
                    await asyncio.wait_for(
                        self._hdel_if_owner(self._presence_key(key), gone, node, self._client),
                        self._timeout,
                    )
                members = {m: n for m, n in members.items() if n not in dead}
            return members
        except _ERRORS as exc:
            raise BrokerUnavailable(redact(self.url), str(exc) or type(exc).__name__) from exc

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        names = sorted(set(nodes))
        if not names:
            return set()
        try:
            alive = await asyncio.wait_for(
                self._client.mget([self._node_key(n) for n in names]), self._timeout
            )
        except _ERRORS as exc:
            raise BrokerUnavailable(redact(self.url), str(exc) or type(exc).__name__) from exc
        return {n for n, flag in zip(names, alive, strict=True) if flag is not None}

    async def presence_of(self, key: str, member: str) -> str | None:
        await self._writer.written()
        try:
            raw = await asyncio.wait_for(
                self._client.hget(self._presence_key(key), member), self._timeout
            )
            if raw is None:
                return None
            node = _text(raw)
            alive = await asyncio.wait_for(self._client.exists(self._node_key(node)), self._timeout)
            return node if alive else None
        except _ERRORS as exc:
            raise BrokerUnavailable(redact(self.url), str(exc) or type(exc).__name__) from exc

    async def _heartbeat(self) -> None:
        period = max(0.05, self.presence_ttl / 3)
        ttl_ms = max(1, int(self.presence_ttl * 1000))
        while True:
            if self._connected:
                try:
                    previous = await asyncio.wait_for(
                        self._client.set(self._node_key(self.node_id), b"1", px=ttl_ms, get=True),
                        self._timeout,
                    )
                    if previous is None:
                        # The key had expired (a stalled loop, failed heartbeats): other
                        # nodes may have removed our members. Write them again.
                        logger.warning("broker: this node's presence had expired; restoring it")
                        await self._restore_presence()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.debug("broker: heartbeat failed: %s", exc)
            await asyncio.sleep(period)

    # -- subscriptions and the supervised listener ----------------------------------------

    async def subscribe(self, channel: str) -> None:
        full = self._channel(channel)
        if channel in self._channels:
            # Wanted already; if its confirmation is still on its way, wait for it too:
            # a second joiner must not miss what the first one would get.
            pending = self._confirm.get(full)
            if pending is not None and not pending.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pending), _SUBSCRIBE_WAIT_S)
            return
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return  # subscribed on (re)connection
        waiter = asyncio.get_running_loop().create_future()
        self._confirm[full] = waiter
        try:
            # Sending only: the listener reads the confirmation. A failure here is the
            # listener's to handle (it reconnects and subscribes to every wanted channel).
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
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.unsubscribe(self._channel(channel))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a stray subscription is harmless: nobody is here
                logger.debug("broker: unsubscribe %s: %s", channel, exc)

    async def _listen(self, first: asyncio.Future[None]) -> None:
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        lost_at: float | None = None
        while not self._stopping:
            pubsub = self._client.pubsub()
            try:
                await asyncio.wait_for(self._client.ping(), self._timeout)
                # A channel of its own, so that the connection exists (and is checked)
                # even before any room has a member here.
                wanted = {self._channel(c) for c in self._channels}
                await asyncio.wait_for(
                    pubsub.subscribe(self._channel(f"node-control:{self.node_id}"), *wanted),
                    self._timeout,
                )
                # From here subscribe() goes straight to this connection; the rooms
                # joined while the list above was sent are subscribed now.
                self._pubsub = pubsub
                missed = {self._channel(c) for c in self._channels} - wanted
                if missed:
                    await asyncio.wait_for(pubsub.subscribe(*missed), self._timeout)
                await self._restore_presence()
                self._set_connected(True, None)
                if lost_at is not None and self._ever_connected_before:
                    self._reconnects += 1
                    logger.warning(
                        "broker: reconnected to %s after %.1fs (reconnection %d); "
                        "subscribed again to %d channel(s)",
                        redact(self.url),
                        time.monotonic() - lost_at,
                        self._reconnects,
                        len(wanted),
                    )
                else:
                    logger.info("broker: connected to %s", redact(self.url))
                self._ever_connected_before = True
                lost_at = None
                if not first.done():
                    first.set_result(None)
                backoff.reset()
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect rather than stop listening
                reason = str(exc) or type(exc).__name__
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.error(
                        "broker: connection to %s lost or refused (%s); local delivery goes "
                        "on, other workers are unreachable until it is back",
                        redact(self.url),
                        reason,
                    )
                self._set_connected(False, reason)
            finally:
                self._pubsub = None
                for waiter in self._confirm.values():
                    if not waiter.done():
                        waiter.set_result(None)
                self._confirm.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), self._timeout)
            if self._stopping:
                break
            await backoff.wait()

    async def _read(self, pubsub: Any) -> None:
        async for message in listen(pubsub, self._timeout):
            kind = message["type"]
            if kind == "message":
                deliver(self._handler, len(self.prefix), message)
            elif kind == "subscribe":
                waiter = self._confirm.pop(_text(message["channel"]), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def _restore_presence(self) -> None:
        """Write this node's liveness and members again (after a connection or a loss)."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.node_id), b"1", px=max(1, int(self.presence_ttl * 1000)))
            for key, members in self._members.items():
                if members:
                    pipe.hset(self._presence_key(key), mapping=dict.fromkeys(members, self.node_id))
            await asyncio.wait_for(pipe.execute(), self._timeout)

    def _set_connected(self, connected: bool, error: str | None) -> None:
        if error is not None:
            self._last_error = error
        if connected != self._connected:
            self._connected = self._writer.connected = connected
            self._since = time.time()
            if not connected:
                # Publishers waiting for a position learn it now, not on reconnection.
                self._writer.fail_calls(self._last_error or "not connected")
        if connected:
            self._writer.wake()

    def health(self) -> BrokerHealth:
        return BrokerHealth(
            url=redact(self.url),
            connected=self._connected,
            since=self._since,
            reconnects=self._reconnects,
            last_error=self._last_error,
            dropped=self._dropped + self._writer.dropped,
        )


async def listen(pubsub: Any, timeout: float) -> AsyncIterator[dict[str, Any]]:
    """The messages of a pub/sub connection, as they come. While it is quiet, a ping
    now and then: no answer in time means the connection is gone, even if the network
    never said so (``ConnectionError``)."""
    loop = asyncio.get_running_loop()
    heard = loop.time()
    ping_sent: float | None = None
    while True:
        message = await pubsub.get_message(timeout=1.0)
        now = loop.time()
        if message is None:
            if ping_sent is not None and now - ping_sent > timeout + 1.0:
                raise ConnectionError("no answer from Redis to a ping")
            if ping_sent is None and now - heard > _IDLE_PING_S:
                ping_sent = now
                await asyncio.wait_for(pubsub.ping(), timeout)
            continue
        heard, ping_sent = now, None
        yield message


def deliver(handler: MessageHandler | None, prefix_len: int, message: dict[str, Any]) -> None:
    """Hand a pub/sub message to ``handler``, its channel without the prefix."""
    channel = _text(message["channel"])
    if handler is None:
        return
    try:
        handler(channel[prefix_len:], message["data"])
    except Exception:
        # One bad message never stops the listener.
        logger.exception("broker: message handler failed on %s", channel)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _retrieved(reply: asyncio.Future[Any]) -> None:
    """A reply nobody waits for: read, so that a failure is not reported as unseen (the
    writer counted it as dropped already)."""
    if not reply.cancelled():
        reply.exception()
