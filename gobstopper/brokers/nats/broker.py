"""The NATS broker: rooms and channels across workers and hosts, through NATS subjects.

Messages are core NATS publications on subjects (``subjects.py``), one connection per
node; nats-py keeps it alive, moves to another server of the list when one goes away,
and subscribes again to every subject there. Message-layer channels are subjects with
NATS's own wildcards, so NATS delivers a publication only to the nodes whose
subscribers match it (``wildcards`` tells the manager so).

Two of a node's patterns may both match one channel (``news.*`` and ``*.sport``), and
NATS then delivers a publication once per matching subscription. So every publication
on a channel subject starts with its origin's id and a number of its own (24 bytes),
and a node skips a copy it has just handled (it remembers the last few thousand).

Presence lives in JetStream key-value buckets (``presence.py``): the members of a
crashed worker disappear within ``presence_ttl`` seconds, as with Redis.

Channel history lives in JetStream streams (``history.py``), which republish each
stored publication to the channel's subject with its sequence: the broker completes
the envelope with the position (``envelope.position_fields``) as it arrives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import nats
from nats.errors import Error as NatsError

from ..._util import Backoff, TaskSet, cancel_and_wait
from ...envelope import position_fields
from ...errors import BrokerUnavailable, ConfigError
from ...history.base import Position
from ..base import Broker, BrokerHealth, MessageHandler
from . import subjects
from .history import OPEN, NatsHistory
from .order import StreamOrder
from .presence import KvPresence

__all__ = ["NatsBroker", "parse_url", "redact"]

logger = logging.getLogger("gobstopper.broker")

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
# Copies of a channel publication recognised as such: far more than can be in flight.
_SEEN = 8192
_FRAME = 24  # origin id (16 bytes) + a number (8 bytes) before a channel publication
# Streams whose order a node keeps (one entry each, the oldest forgotten first).
_STREAMS_KEPT = 10_000
# How long an early republished publication waits for the ones before it.
_REORDER_WAIT_S = 0.05
# How long held publications wait for JetStream to give back the ones before them.
_FILL_GIVE_UP_S = 5.0
_ERRORS = (NatsError, OSError, asyncio.TimeoutError)
_PENDING: Any = object()  # a subscription on its way
_VAR = "GOBSTOPPER_BROKER_URL"


def parse_url(url: str, variable: str = _VAR) -> tuple[list[str], dict[str, str]]:
    """The server URLs of ``nats://h1:4222,h2:4222[?options]`` (each part may repeat
    ``nats://``; ``tls://`` for TLS) and its options.

    Option: ``replicas`` (copies of history streams and presence buckets in a
    JetStream cluster, 1 to 5).

    Raises:
        ConfigError: naming ``variable`` and the bad value.
    """
    text, _, query = url.partition("?")
    scheme = text.partition("://")[0]
    servers: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if "://" not in part:
            part = f"{scheme}://{part}"
        try:
            parts = urlsplit(part)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ConfigError(f"{variable}={_shown(url)!r} is not a valid URL: {exc}") from None
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ConfigError(
                f"{variable}={_shown(url)!r}: each NATS server needs a host, e.g. "
                "nats://127.0.0.1:4222,nats://127.0.0.1:4223"
            )
        if parts.path not in ("", "/"):
            raise ConfigError(
                f"{variable}={_shown(url)!r}: a NATS URL has no path ({parts.path!r})"
            )
        servers.append(part)
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - {"replicas"})
    if unknown:
        raise ConfigError(f"{variable}={_shown(url)!r}: unknown option(s) {', '.join(unknown)}")
    replicas = options.get("replicas", "1")
    if not replicas.isdigit() or not 1 <= int(replicas) <= 5:
        raise ConfigError(f"{variable}={_shown(url)!r}: replicas must be 1 to 5, not {replicas!r}")
    return servers, options


def _shown(url: str) -> str:
    from .. import shown

    return shown(url)


def redact(url: str) -> str:
    """``url`` without passwords or tokens, for logs and health reports."""
    out = []
    for part in url.split(","):
        parts = urlsplit(part if "://" in part else "nats://" + part)
        if parts.password is not None or parts.username is not None:
            host = parts.hostname or ""
            if parts.port is not None:
                host += f":{parts.port}"
            part = urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, ""))
        out.append(part)
    return ",".join(out)


class NatsBroker(Broker):
    """Publish/subscribe, presence and history on NATS (with JetStream).

    Args:
        url: ``nats://host:port`` or several, comma-separated (see ``parse_url``).
        prefix: the first token of every subject and the start of every bucket and
            stream name, to share one NATS.
        presence_ttl: seconds after which a silent node's members are gone.
        timeout: seconds any single request to NATS may take.
    """

    #: NATS matches channel patterns itself: a node subscribes to what its clients
    #: asked for and gets only the publications that match.
    wildcards = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gobstopper:",
        presence_ttl: float = 10.0,
        timeout: float = 2.0,
    ) -> None:
        servers, options = parse_url(url)
        self.url = url
        self._servers = servers
        self._replicas = int(options.get("replicas", "1"))
        self.node_id = uuid.uuid4().hex
        self._p = subjects.prefix_token(prefix)
        self.presence_ttl = presence_ttl
        self._timeout = timeout
        self._nc: Any = None
        self._js: Any = None
        self._handler: MessageHandler | None = None
        self._subs: dict[str, Any] = {}  # wanted broker channel -> its subscription
        self._connected = False
        self._presence = KvPresence(
            prefix=self._p,
            replicas=self._replicas,
            presence_ttl=presence_ttl,
            timeout=timeout,
            url=redact(url),
            connected=lambda: self._connected,
        )
        self._seen: set[bytes] = set()
        self._seen_order: collections.deque[bytes] = collections.deque()
        self._orders: dict[str, StreamOrder[tuple[str, bytes]]] = {}  # by stream name
        self._filling: set[str] = set()
        self._seq = 0
        self._origin = b""
        self._history = NatsHistory(
            self._jetstream,
            prefix=self._p,
            url=redact(url),
            timeout=timeout,
            replicas=self._replicas,
        )
        self.history = self._history
        self._tasks: list[asyncio.Task[None]] = []
        self._background = TaskSet(logger, "NATS operation", throttle=True)
        self._stopping = False
        self._since = time.time()
        self._reconnects = 0
        self._last_error: str | None = None
        self._dropped = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, handler: MessageHandler) -> None:
        # A new id per start: processes forked from one that made the broker must not
        # share it (each would skip the others' messages as its own).
        self.node_id = self._presence.node_id = uuid.uuid4().hex
        self._origin = bytes.fromhex(self.node_id)
        self._handler = handler
        self._stopping = False
        connected = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.ensure_future(self._connect(connected)),
            asyncio.ensure_future(self._presence.write()),
        ]
        # Wait a little for the first connection; never fail here (health() tells).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(connected), self._timeout)

    async def stop(self) -> None:
        self._stopping = True
        if self._connected:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._presence.drained(), self._timeout)
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._background.wait()
        nc, self._nc = self._nc, None
        if nc is not None and self._connected:
            try:
                await self._presence.withdraw()
            except Exception as exc:
                logger.warning("broker: could not withdraw presence on stop: %s", exc)
        self._handler = None
        self._set_connected(False, None)
        self._subs.clear()
        if nc is not None:
            with contextlib.suppress(Exception):
                # What was published last (an emitter's, goodbyes) goes out first.
                await asyncio.wait_for(nc.flush(self._timeout), self._timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), self._timeout)

    async def _connect(self, first: asyncio.Future[None]) -> None:
        """Connect (retrying with backoff until a server answers), then leave the
        connection to nats-py, which reconnects by itself."""
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        logged = False
        while not self._stopping:
            try:
                nc = await nats.connect(
                    servers=self._servers,
                    name=f"gobstopper {self.node_id}",
                    connect_timeout=self._timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                await self._set_up(nc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_connected(False, str(exc) or type(exc).__name__)
                if not logged:
                    logger.error(
                        "broker: cannot reach %s (%s); local delivery goes on, other "
                        "workers are unreachable until it answers",
                        redact(self.url),
                        self._last_error,
                    )
                    logged = True
                await backoff.wait()
                continue
            logger.info("broker: connected to %s", redact(self.url))
            if not first.done():
                first.set_result(None)
            return

    async def _set_up(self, nc: Any) -> None:
        try:
            js = nc.jetstream(timeout=self._timeout)
            await self._presence.buckets(js)
            self._nc, self._js = nc, js
            await self._subscribe_all(nc)
            await self._confirm(nc)
            await self._restore()
        except BaseException:
            self._nc = None
            self._subs = dict.fromkeys(self._subs)  # to subscribe on the next connection
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._set_connected(True, None)
        self._tasks.append(asyncio.ensure_future(self._presence.heartbeat()))

    async def _recover(self) -> None:
        """After a reconnection: the buckets may be gone with a restarted server, and
        this node's presence may have expired (other nodes then dropped its members)."""
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        while self._connected and not self._stopping:
            try:
                await self._presence.buckets(self._js)
                await self._restore()
                return
            except (*_ERRORS, BrokerUnavailable) as exc:
                # JetStream may answer a moment after the server does (a cluster
                # electing its leaders).
                logger.debug("broker: presence not restored yet: %s", exc)
            await backoff.wait()

    def _jetstream(self) -> Any:
        if self._js is None or not self._connected:
            raise BrokerUnavailable(redact(self.url), self._last_error or "not connected")
        return self._js

    # -- nats-py's callbacks --------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = str(exc) or type(exc).__name__
        logger.debug("broker: NATS error: %s", self._last_error)

    async def _on_disconnected(self) -> None:
        if self._stopping or self._nc is None:
            return
        logger.error(
            "broker: connection to NATS lost (%s); local delivery goes on, other workers "
            "are unreachable until it is back",
            self._last_error or "disconnected",
        )
        self._set_connected(False, self._last_error or "disconnected")

    async def _on_reconnected(self) -> None:
        if self._stopping or self._nc is None:
            return
        self._reconnects += 1
        logger.warning(
            "broker: reconnected to %s (reconnection %d); subscribed again to %d subject(s)",
            self._nc.connected_url.netloc if self._nc.connected_url else "NATS",
            self._reconnects,
            len(self._subs),
        )
        self._history.forget()
        self._orders.clear()  # publications may have been missed: start anywhere
        self._set_connected(True, None)
        self._background.spawn(self._recover())

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> None:
        nc = self._nc
        if nc is None or not self._connected:
            self._dropped += 1
            raise BrokerUnavailable(redact(self.url), self._last_error or "not connected")
        subject = subjects.subject(self._p, channel)
        if subjects.wildcard(channel):
            raise subjects.SubjectError(f"cannot publish to a pattern: {channel!r}")
        if channel.startswith(subjects.CHANNEL):
            self._seq += 1
            data = self._origin + self._seq.to_bytes(8, "big") + data
        try:
            await nc.publish(subject, data)
        except _ERRORS as exc:
            self._dropped += 1
            raise BrokerUnavailable(redact(self.url), str(exc) or type(exc).__name__) from exc

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
        """See ``Broker.publish_with_history``: stored in ``stream``'s JetStream stream,
        which republishes it to ``channel``'s subject with its sequence, in order.

        Always waits for JetStream's acknowledgement (``wait`` is not needed: the
        order among publications is JetStream's, not this node's).

        Raises:
            BrokerUnavailable: not stored, or not known to be (then delivery is at most
                once); counted in ``health().dropped``.
        """
        del data  # the open envelope carries it; a read takes it from there
        if not self._connected:
            self._dropped += 1
            raise BrokerUnavailable(redact(self.url), self._last_error or "not connected")
        target = subjects.subject(self._p, channel)
        try:
            state = await self._history.ensure(stream, size, ttl, target)
            offset = await self._history.store(state, bytes((OPEN,)) + head)
        except BrokerUnavailable:
            self._dropped += 1
            raise
        return Position(offset, state.epoch)

    # -- receiving --------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """See ``Broker.subscribe``.

        Raises:
            SubjectError: a ``chan:`` channel that is no channel or pattern (an empty
                segment, a misplaced wildcard).
        """
        if channel in self._subs:
            return
        subjects.subject(self._p, channel)  # refused here, before it is wanted
        self._subs[channel] = None
        nc = self._nc
        if nc is not None:
            try:
                await self._subscribe(nc, channel)
                # Returns once the server has the subscription (in a NATS cluster, the
                # other servers learn of it a moment later).
                await self._confirm(nc)
            except _ERRORS as exc:  # nats-py subscribes again on reconnection
                logger.debug("broker: subscribe %s: %s", channel, exc)

    async def unsubscribe(self, channel: str) -> None:
        sub = self._subs.pop(channel, None)
        if sub is not None and sub is not _PENDING:
            with contextlib.suppress(*_ERRORS):  # a stray subscription is harmless
                await sub.unsubscribe()

    async def _subscribe_all(self, nc: Any) -> None:
        self._subs[f"node-control:{self.node_id}"] = None
        for channel, sub in list(self._subs.items()):
            if sub is None:
                try:
                    await self._subscribe(nc, channel)
                except subjects.SubjectError as exc:  # never keeps the others from NATS
                    del self._subs[channel]
                    logger.error("broker: not subscribed: %s", exc)

    async def _subscribe(self, nc: Any, channel: str) -> None:
        if self._subs.get(channel) is not None:
            return  # subscribed already, or on its way
        subject = subjects.subject(self._p, channel)  # a SubjectError leaves nothing behind
        self._subs[channel] = _PENDING
        framed = channel.startswith(subjects.CHANNEL)
        try:
            sub = await nc.subscribe(subject, cb=self._receiver(channel, framed))
        except BaseException:
            if self._subs.get(channel) is _PENDING:
                self._subs[channel] = None
            raise
        if self._subs.get(channel) is _PENDING:
            self._subs[channel] = sub
        else:  # unsubscribed meanwhile (and maybe wanted again: subscribed by that call)
            await sub.unsubscribe()

    async def _confirm(self, nc: Any) -> None:
        """Return once the server has processed what this node sent so far. nats-py's
        ``flush()`` writes its PING straight to the socket, ahead of commands still in
        its buffer (a SUB just made), so its PONG can come before the server saw them:
        the second PING leaves after the buffer, and its PONG confirms it."""
        await nc.flush(self._timeout)
        await nc.flush(self._timeout)

    def _receiver(self, channel: str, framed: bool) -> Callable[[Any], Awaitable[None]]:
        async def receive(msg: Any) -> None:
            data: bytes = msg.data
            headers = msg.headers
            if headers and "Nats-Sequence" in headers:
                await self._republished(channel, headers, data)
                return
            if framed:
                if len(data) < _FRAME or not self._first_copy(data[:_FRAME]):
                    return  # the same publication through a second matching subscription
                data = data[_FRAME:]
            self._deliver(channel, data)

        return receive

    def _deliver(self, channel: str, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler(channel, data)
        except Exception:
            # One bad message never stops the subscription.
            logger.exception("broker: message handler failed on %s", channel)

    async def _republished(self, channel: str, headers: dict[str, str], stored: bytes) -> None:
        """A publication republished by its history stream: completed with its position
        and handed on in offset order (``order.py``)."""
        if stored[:1] != bytes((OPEN,)):
            return
        name = headers.get("Nats-Stream", "")
        offset = int(headers["Nats-Sequence"])
        order = self._orders.get(name)
        try:
            if order is None:
                order = self._orders[name] = StreamOrder()
                epoch = await self._history.epoch(name, refresh=True)
            elif offset <= order.last and headers.get("Nats-Last-Sequence") == "0":
                # The first of its stream now: a copy, after a quiet spell longer than
                # the channel's ttl (same epoch), or a stream made again (a new one).
                known = await self._history.epoch(name)
                epoch = await self._history.epoch(name, refresh=True)
                if epoch != known:
                    order = self._orders[name] = StreamOrder()
            else:
                epoch = await self._history.epoch(name)
        except BrokerUnavailable as exc:
            logger.warning("broker: a publication of %s skipped: %s", name, exc)
            return
        if len(self._orders) > _STREAMS_KEPT:
            self._orders.pop(next(iter(self._orders)))  # the oldest: it starts anywhere
        item = (channel, stored[1:] + position_fields(offset, epoch))
        ready, waiting = order.arrive(offset, item)
        for one in ready:
            self._deliver(*one)
        if waiting and name not in self._filling:
            self._filling.add(name)
            self._background.spawn(self._fill(name, channel, epoch))

    async def _fill(self, name: str, channel: str, epoch: str) -> None:
        """Publications that did not come soon after a later one: read from the stream
        (retried while JetStream cannot answer; past ``_FILL_GIVE_UP_S``, what waits is
        handed on without them: the subscribers' gap check then makes them resume)."""
        backoff = Backoff(_REORDER_WAIT_S, 1.0)
        loop = asyncio.get_running_loop()
        since = loop.time()
        try:
            await asyncio.sleep(_REORDER_WAIT_S)  # most come within microseconds
            while True:
                order = self._orders.get(name)
                if order is None or not order.missing():
                    return
                try:
                    stored = await self._history.stored(name, order.missing())
                except BrokerUnavailable as exc:
                    if loop.time() - since < _FILL_GIVE_UP_S:
                        await backoff.wait()
                        continue
                    logger.warning("broker: publications of %s not read back: %s", name, exc)
                    stored = {}
                found = {
                    offset: (channel, data[1:] + position_fields(offset, epoch))
                    for offset, data in stored.items()
                    if data[:1] == bytes((OPEN,))
                }
                if order is self._orders.get(name):
                    for item in order.fill(found):
                        self._deliver(*item)
                since = loop.time()
                await asyncio.sleep(_REORDER_WAIT_S)
        finally:
            self._filling.discard(name)

    def _first_copy(self, frame: bytes) -> bool:
        if frame in self._seen:
            return False
        self._seen.add(frame)
        self._seen_order.append(frame)
        if len(self._seen_order) > _SEEN:
            self._seen.discard(self._seen_order.popleft())
        return True

    # -- presence -------------------------------------------------------------------------

    def presence_add(self, key: str, member: str) -> None:
        self._presence.add(key, member)

    def presence_remove(self, key: str, member: str) -> None:
        self._presence.remove(key, member)

    async def presence(self, key: str) -> dict[str, str]:
        return await self._presence.read(key)

    async def presence_of(self, key: str, member: str) -> str | None:
        return await self._presence.node_of(key, member)

    async def live_nodes(self, nodes: Collection[str]) -> set[str]:
        return await self._presence.live_nodes(nodes)

    async def _restore(self) -> None:
        await self._presence.restore()

    def _set_connected(self, connected: bool, error: str | None) -> None:
        if error is not None:
            self._last_error = error
        if connected != self._connected:
            self._connected = connected
            self._since = time.time()

    def health(self) -> BrokerHealth:
        return BrokerHealth(
            url=redact(self.url),
            connected=self._connected,
            since=self._since,
            reconnects=self._reconnects,
            last_error=self._last_error,
            dropped=self._dropped,
        )
