"""Channel history in NATS JetStream: one stream per history stream, republished in order.

Each history stream (a channel's) is a JetStream stream named by a digest of its name
(``subjects.stream_name``), capturing one subject (``<p>.history.<name>``), limited to
the last ``size`` messages (``max_msgs``) and to ``ttl`` seconds (``max_age``). The
stream sequence is the offset: 1 for the first publication, one more per publication,
assigned by JetStream as it stores the message, so every node agrees on one order. The
epoch is a random id drawn when the stream is created and kept as its description:
a stream deleted and created again has a new one, and positions from before are
recognised as unusable.

A publication with history is stored as an *open* envelope (``envelope.encode_open``)
behind a kind byte, and the stream *republishes* it (JetStream's ``RePublish``) to the
subject of the channel's subscribers, with its sequence in a header: JetStream does
that after storing, one message after the other, so every node gets a stream's
publications in offset order, whoever published them, and none is delivered that was
not stored. The broker completes the envelope with the position as it arrives.

Stored bytes: ``0x00`` + data (``append``), or ``0x01`` + an open envelope whose
payload is the data (``publish_with_history``); a read gives the data either way.

A stream is made by a channel's first publication (which says where to republish:
JetStream cannot change that later). A read of a channel never published makes no
stream: it gives offset 0 in the epoch the stream will have, drawn by the first node
that asks and kept for an hour in the key-value bucket ``<p>_epochs``, so that a
position handed out before the first publication stays valid; making the stream takes
that epoch and drops the entry, so that a stream deleted and made again draws anew.

Unlike the Redis store, a stream outlives its publications: a channel quiet for longer
than ``ttl`` keeps its epoch and its last offset for as long as the stream exists. Each
channel ever published holds one (small) stream: bound their number with the account's
JetStream limits where clients choose channel names freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ... import envelope
from ...errors import BrokerUnavailable
from ...history.base import HistoryStore, Position, Publication, Window
from . import subjects

__all__ = ["NatsHistory", "StreamState"]

RAW = 0
OPEN = 1
# Offsets fetched at once by a read (each one JetStream "direct get", pipelined).
_READ_BATCH = 256
# Streams this node remembers (their names, epochs, limits) before starting over.
_STREAMS_KEPT = 10_000
# How long the epoch drawn for a channel never published stays valid.
_EPOCH_TTL = 3600.0


@dataclass(frozen=True)
class StreamState:
    """What this node knows of one JetStream stream."""

    name: str
    subject: str
    epoch: str
    size: int
    ttl: float
    republish: str | None


class NatsHistory(HistoryStore):
    """A ``HistoryStore`` in JetStream.

    Args:
        jetstream: the current JetStream context (raises ``BrokerUnavailable`` while
            the connection is down).
        prefix: the subjects' first token (``subjects.prefix_token``).
        url: the broker's URL without its password, for errors.
        timeout: seconds any single JetStream request may take.
        replicas: copies of each stream in a JetStream cluster (1 to 5).
    """

    def __init__(
        self,
        jetstream: Callable[[], Any],
        *,
        prefix: str,
        url: str,
        timeout: float = 2.0,
        replicas: int = 1,
    ) -> None:
        self._js = jetstream
        self._prefix = prefix
        self._url = url
        self._timeout = timeout
        self._replicas = replicas
        self._streams: dict[str, StreamState] = {}  # history stream -> state
        self._epochs: dict[str, str] = {}  # JetStream stream name -> epoch
        self._locks: dict[str, asyncio.Lock] = {}
        self._epochs_kv: Any = None

    # -- the contract ----------------------------------------------------------------------

    async def append(self, channel: str, data: bytes, size: int, ttl: float) -> Position:
        state = await self.ensure(channel, size, ttl, None)
        return Position(await self.store(state, bytes((RAW,)) + data), state.epoch)

    async def read(
        self, channel: str, since: int | None = None, limit: int | None = None
    ) -> Window:
        from nats.js.errors import NotFoundError

        self._bound()
        name = subjects.stream_name(self._prefix, channel)
        try:
            info = await self._call(lambda js: js.stream_info(name), NotFoundError)
        except NotFoundError:
            # Never published: a position to start from, in the epoch the stream will
            # have (made only by a publication, which knows where to republish).
            epoch = await self._next_epoch(channel)
            if epoch is not None:
                return Window([], Position(0, epoch), 1)
            info = await self._call(lambda js: js.stream_info(name))  # made meanwhile
        epoch = info.config.description or ""
        self._epochs[name] = epoch
        first, last = info.state.first_seq, info.state.last_seq
        if not info.state.messages:
            first = last + 1
        if since is None:
            start = first if limit is None else max(first, last - limit + 1)
        else:
            start = max(first, since + 1)
        end = last if limit is None or since is None else min(last, start + limit - 1)
        publications = await self._fetch(name, epoch, start, end) if start <= end else []
        return Window(publications, Position(last, epoch), first)

    # -- for the broker ----------------------------------------------------------------------

    def _bound(self) -> None:
        """Keep what is known of streams bounded (channel names may be endless): past
        ``_STREAMS_KEPT``, start over (each is asked for again when next needed)."""
        if len(self._streams) > _STREAMS_KEPT or len(self._epochs) > _STREAMS_KEPT:
            self._streams.clear()
            self._epochs.clear()
            self._locks = {c: lock for c, lock in self._locks.items() if lock.locked()}

    async def ensure(
        self, channel: str, size: int, ttl: float, republish: str | None
    ) -> StreamState:
        """The stream of ``channel``, made or brought to these limits, republishing its
        publications to subject ``republish`` (None: not republished). JetStream cannot
        change where a stream republishes: a stream made with another ``republish``
        raises ``BrokerUnavailable`` saying so.

        Raises:
            BrokerUnavailable: JetStream cannot be asked now.
        """
        state = self._streams.get(channel)
        if state is not None and _fits(state, size, ttl, republish):
            return state
        self._bound()
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            state = self._streams.get(channel)
            if state is None or not _fits(state, size, ttl, republish):
                state = await self._make(channel, size, ttl, republish)
                self._streams[channel] = state
                self._epochs[state.name] = state.epoch
        return state

    async def store(self, state: StreamState, data: bytes) -> int:
        """Append ``data`` to ``state``'s stream; its sequence (the offset).

        Raises:
            BrokerUnavailable: not stored, or not known to be (the connection failed).
        """
        ack = await self._call(lambda js: js.publish(state.subject, data, stream=state.name))
        return int(ack.seq)

    async def epoch(self, name: str, refresh: bool = False) -> str:
        """The epoch of JetStream stream ``name`` (asked once, then remembered).

        Raises:
            BrokerUnavailable: JetStream cannot be asked now.
        """
        epoch = None if refresh else self._epochs.get(name)
        if epoch is None:
            info = await self._call(lambda js: js.stream_info(name))
            epoch = info.config.description or ""
            self._epochs[name] = epoch
            for channel, state in list(self._streams.items()):
                if state.name == name and state.epoch != epoch:
                    del self._streams[channel]  # made again elsewhere: ask again
        return epoch

    def forget(self) -> None:
        """Forget what is known of streams (after a reconnection: they may have changed)."""
        self._streams.clear()
        self._epochs.clear()
        self._epochs_kv = None

    # -- inside ---------------------------------------------------------------------------------

    async def _make(
        self, channel: str, size: int, ttl: float, republish: str | None
    ) -> StreamState:
        from nats.js.api import DiscardPolicy, RePublish, StorageType, StreamConfig
        from nats.js.errors import APIError, NotFoundError

        name = subjects.stream_name(self._prefix, channel)
        subject = subjects.stream_subject(self._prefix, channel)
        try:
            info = await self._call(lambda js: js.stream_info(name), NotFoundError)
        except NotFoundError:
            info = None
        epoch = None if info is not None else await self._next_epoch(channel)
        if info is None and epoch is None:
            info = await self._call(lambda js: js.stream_info(name))  # made meanwhile
        if info is None:
            config = StreamConfig(
                name=name,
                description=epoch,
                subjects=[subject],
                max_msgs=size,
                max_age=ttl,
                # Publications carry no id to deduplicate by; JetStream still wants a
                # window, and one no longer than max_age.
                duplicate_window=min(ttl, 1.0),
                discard=DiscardPolicy.OLD,
                storage=StorageType.FILE,
                num_replicas=self._replicas,
                allow_direct=True,
                republish=None if republish is None else RePublish(src=subject, dest=republish),
            )
            # Two nodes may make it at once: the one that loses finds it made.
            try:
                info = await self._call(lambda js: js.add_stream(config), APIError)
            except APIError as refused:
                try:
                    info = await self._call(lambda js: js.stream_info(name), NotFoundError)
                except NotFoundError:  # not made meanwhile: refused (limits, settings)
                    raise BrokerUnavailable(self._url, str(refused)) from refused
            else:
                # The epoch is the stream's now; one made after a deletion draws anew.
                await self._forget_next_epoch(channel)
        config = info.config
        made = config.republish.dest if config.republish is not None else None
        if made != republish:
            raise BrokerUnavailable(
                self._url,
                f"stream {name} of {channel!r} republishes to {made!r}, not {republish!r}",
            )
        state = StreamState(
            name,
            subject,
            config.description or "",
            int(config.max_msgs),
            float(config.max_age or 0),
            made,
        )
        if _fits(state, size, ttl, republish):
            return state
        config.max_msgs = size
        config.max_age = ttl
        config.duplicate_window = min(ttl, 1.0)
        await self._call(lambda js: js.update_stream(config))
        return StreamState(name, subject, state.epoch, size, ttl, made)

    async def _next_epoch(self, channel: str) -> str | None:
        """The epoch ``channel``'s stream will have when it is made: drawn by the first
        node that asks, kept for an hour in a key-value bucket, so that a position
        handed out before the first publication stays valid. None: another node made
        the stream meanwhile (its epoch is the stream's)."""
        from nats.js.errors import APIError, KeyNotFoundError

        kv = await self._epochs_bucket()
        key = subjects.token(channel)
        try:
            entry = await self._call(lambda js: kv.get(key), KeyNotFoundError)
            return bytes(entry.value or b"").decode()
        except KeyNotFoundError:
            pass
        epoch = uuid.uuid4().hex
        try:
            await self._call(lambda js: kv.create(key, epoch.encode()), APIError)
        except APIError:  # drawn by another node meanwhile
            try:
                entry = await self._call(lambda js: kv.get(key), KeyNotFoundError)
            except KeyNotFoundError:
                return None  # ... and taken by the stream it made since
            return bytes(entry.value or b"").decode()
        return epoch

    async def _forget_next_epoch(self, channel: str) -> None:
        kv = await self._epochs_bucket()
        with contextlib.suppress(BrokerUnavailable):
            await self._call(lambda js: kv.delete(subjects.token(channel)))

    async def _epochs_bucket(self) -> Any:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import APIError, BucketNotFoundError

        if self._epochs_kv is not None:
            return self._epochs_kv
        bucket = f"{self._prefix}_epochs"
        try:
            kv = await self._call(lambda js: js.key_value(bucket), BucketNotFoundError)
        except BucketNotFoundError:
            config = KeyValueConfig(
                bucket=bucket,
                history=1,
                ttl=_EPOCH_TTL,
                storage=StorageType.FILE,
                replicas=self._replicas,
            )
            try:
                kv = await self._call(lambda js: js.create_key_value(config), APIError)
            except APIError:  # made by another node meanwhile
                kv = await self._call(lambda js: js.key_value(bucket))
        self._epochs_kv = kv
        return kv

    async def stored(self, name: str, offsets: range) -> dict[int, bytes]:
        """The stored bytes of JetStream stream ``name`` at ``offsets`` (those still kept).

        Raises:
            BrokerUnavailable: JetStream cannot be asked now.
        """
        from nats.js.errors import NotFoundError

        async def one(seq: int) -> bytes | None:
            try:
                msg = await self._call(lambda js: js.get_msg(name, seq, direct=True), NotFoundError)
            except NotFoundError:
                return None  # expired or trimmed since the stream's state was read
            return bytes(msg.data or b"")

        found: dict[int, bytes] = {}
        for first in range(offsets.start, offsets.stop, _READ_BATCH):
            seqs = range(first, min(offsets.stop, first + _READ_BATCH))
            batch = await asyncio.gather(*(one(seq) for seq in seqs))
            found.update((seq, data) for seq, data in zip(seqs, batch, strict=True) if data)
        return found

    async def _fetch(self, name: str, epoch: str, start: int, end: int) -> list[Publication]:
        stored = await self.stored(name, range(start, end + 1))
        return [Publication(seq, _data(data, seq, epoch)) for seq, data in stored.items()]

    async def _call(
        self, request: Callable[[Any], Awaitable[Any]], *passing: type[Exception]
    ) -> Any:
        """One JetStream request, its failures as ``BrokerUnavailable``, but for those
        the caller handles (``passing``)."""
        from nats.errors import Error as NatsError

        try:
            return await asyncio.wait_for(request(self._js()), self._timeout)
        except (NatsError, OSError, asyncio.TimeoutError) as exc:
            if isinstance(exc, passing):
                raise
            raise BrokerUnavailable(self._url, str(exc) or type(exc).__name__) from exc


def _fits(state: StreamState, size: int, ttl: float, republish: str | None) -> bool:
    return state.size == size and abs(state.ttl - ttl) < 1e-3 and state.republish == republish


def _data(stored: bytes, offset: int, epoch: str) -> bytes:
    """The data of a stored message (its kind byte says how it was stored)."""
    if stored[:1] == bytes((OPEN,)):
        whole = stored[1:] + envelope.position_fields(offset, epoch)
        return envelope.decode(whole).payload
    return stored[1:]
