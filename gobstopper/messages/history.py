"""Channel history for the message layer: which channels keep it, the position on every
push, and subscriptions that resume from a position.

A channel keeps history when it matches a pattern registered with ``RPC.keep_history``;
every publication to it is appended to the manager's history store, which gives it a
position (offset, epoch), and each ``rpc.message`` push carries that position. With
other nodes, the append and the publication to them are one step of the broker, and
every node (this one too) delivers a channel's publications as they come back from the
broker: all of them in the store's order.

Resuming (``rpc.subscribe`` with ``since``) is exact at the seam between what was kept
and what is live: the subscriber is first put where live publications reach it, but
they are held in a buffer; then the store is read; then, without a pause, the kept
publications after ``since``, then the held ones after the last of those, are queued for
it in order; and only then does it receive live ones directly. No publication is lost
between the read and going live, and none is sent twice.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..delivery import Push, chosen
from ..errors import CloseCode
from ..history.base import Position, Publication, Window
from ..manager import Connection, WebSocketManager
from . import channels
from .codec import DecodeError, json_loads
from .protocol import INVALID_PARAMS, RPCError

__all__ = [
    "POLICIES",
    "POSITION_ROOM",
    "ChannelHistory",
    "History",
    "HistoryPolicy",
    "KeptMessage",
    "history_stream",
    "parse_policies",
    "parse_since",
    "policy_entry",
    "with_position",
]

#: Makes the msgpack form of a JSON push, lazily (``pushes._lazy_msgpack``).
MakeBinary = Callable[[bytes], Callable[[], "bytes | None"]]

#: Bytes a position adds to a push, at most: pushes are checked against the message
#: limit with this much to spare.
POSITION_ROOM = 80

# Every channel message starts so (``protocol.channel_message`` encoded compactly): the
# position goes right after it.
_PARAMS = b'{"jsonrpc":"2.0","method":"rpc.message","params":{'
_EPOCH = re.compile(r"[0-9A-Za-z_.:-]{1,40}")


#: The presence key under which each node lists an endpoint's history policies
#: (``POLICIES + topic``), one entry per ``keep``: ``policy_entry``.
POLICIES = "history policies:"


def policy_entry(index: int, pattern: str, size: int, ttl: float) -> str:
    """A history policy as a presence entry: ``<index> <pattern> <size> <ttl>``."""
    return f"{index} {pattern} {size} {ttl!r}"


def history_stream(topic: str, channel: str) -> str:
    """The history stream of ``channel`` of the endpoint whose topic is ``topic`` (what
    every publisher, a server's or an emitter's, appends to)."""
    return f"{topic}:{channel}"


def parse_policies(entries: Iterable[str]) -> list[tuple[str, int, float]]:
    """The policies of the presence entries nodes advertise (``<node id>`` and a
    ``policy_entry``), in the order they were kept; each once, whichever nodes keep it.

    Raises:
        ValueError: an entry that is not one.
    """
    found = []
    for entry in entries:
        _node, index, pattern, size, ttl = entry.split(" ")
        found.append((int(index), pattern, int(size), float(ttl)))
    return [(pattern, size, ttl) for _, pattern, size, ttl in sorted(set(found))]


def with_position(raw: bytes, position: Position) -> bytes:
    """The JSON push ``raw`` (a channel message) with ``offset`` and ``epoch`` in its params."""
    if not raw.startswith(_PARAMS):
        raise ValueError("not a channel message")
    head = b'"offset":%d,"epoch":"%s",' % (position.offset, position.epoch.encode())
    return _PARAMS + head + raw[len(_PARAMS) :]


def parse_since(value: Any) -> Position:
    """A client's ``since``: ``{"offset": int >= 0, "epoch": str}``.

    Raises:
        RPCError: ``INVALID_PARAMS`` for anything else.
    """
    if isinstance(value, dict) and set(value) == {"offset", "epoch"}:
        offset, epoch = value["offset"], value["epoch"]
        if (
            isinstance(offset, int)
            and not isinstance(offset, bool)
            and 0 <= offset < 2**63
            and isinstance(epoch, str)
            and _EPOCH.fullmatch(epoch)
        ):
            return Position(offset, epoch)
    raise RPCError(INVALID_PARAMS, "Invalid params", 'since must be {"offset": n, "epoch": "..."}')


@dataclass(frozen=True, slots=True)
class KeptMessage:
    """A publication read from a channel's history: its offset and its data."""

    offset: int
    data: Any


@dataclass(frozen=True, slots=True)
class History:
    """What ``RPC.history`` read.

    Attributes:
        messages: the publications, oldest first.
        position: the channel's position now.
        recovered: with ``since``: whether everything after it was still kept (when
            False, ``messages`` is empty); None without ``since``.
    """

    messages: list[KeptMessage]
    position: Position
    recovered: bool | None

    def as_dict(self) -> dict[str, Any]:
        """The answer to ``rpc.history``."""
        answer: dict[str, Any] = {
            "publications": [{"offset": m.offset, "data": m.data} for m in self.messages],
            "offset": self.position.offset,
            "epoch": self.position.epoch,
        }
        if self.recovered is not None:
            answer["recovered"] = self.recovered
        return answer


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a channel is kept: the last ``size`` publications, for ``ttl`` seconds."""

    size: int
    ttl: float


class ChannelHistory:
    """The history side of one endpoint.

    Args:
        manager: its history store and its delivery loop.
        topic: the endpoint's topic; a channel's stream is ``<topic>:<channel>``.
    """

    def __init__(self, manager: WebSocketManager, topic: str) -> None:
        self.manager = manager
        self.topic = topic
        self._policies: list[tuple[str, HistoryPolicy]] = []
        self._policy_of: dict[str, HistoryPolicy | None] = {}  # by channel, bounded
        # Subscribers resuming, by channel: the positioned pushes held for each.
        self._held: dict[str, dict[Connection, list[tuple[int, Push]]]] = {}
        # Subscribers just live, by channel: the last offset their replay covered.
        self._floors: dict[str, dict[Connection, int]] = {}
        # The last position delivered here, by channel with subscribers here.
        self._seen: dict[str, Position] = {}

    # -- which channels ----------------------------------------------------------------

    def keep(self, pattern: str, size: int, ttl: float) -> None:
        """Keep history for the channels ``pattern`` matches (the first pattern that
        matches a channel decides).

        Raises:
            ValueError: not a channel name or pattern, or a size or ttl that is not
                positive.
        """
        if not channels.valid_pattern(pattern):
            raise ValueError(f"not a channel name or pattern: {pattern!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"size={size!r}: history keeps a positive number of publications")
        if not ttl > 0:
            raise ValueError(
                f"ttl={ttl!r}: history keeps publications a positive number of seconds"
            )
        self._policies.append((pattern, HistoryPolicy(size, float(ttl))))
        self._policy_of.clear()
        # Told to the cluster, so that a publisher elsewhere (an emitter) keeps history
        # where this endpoint does: the first pattern that matches decides, by number.
        entry = policy_entry(len(self._policies) - 1, pattern, size, float(ttl))
        self.manager.cluster.advertise(POLICIES + self.topic, entry)

    def policy(self, channel: str) -> HistoryPolicy | None:
        """How ``channel`` (a name) keeps history; None: it keeps none."""
        if not self._policies:
            return None
        try:
            return self._policy_of[channel]
        except KeyError:
            pass
        found = None
        for pattern, policy in self._policies:
            if pattern == channel or (
                channels.is_pattern(pattern) and channels.matches(pattern, channel)
            ):
                found = policy
                break
        if len(self._policy_of) > 10_000:
            self._policy_of.clear()  # bounded: channel names may be endless
        self._policy_of[channel] = found
        return found

    def stream(self, channel: str) -> str:
        return history_stream(self.topic, channel)

    # -- positioned pushes --------------------------------------------------------------

    def push(
        self,
        raw: bytes,
        position: Position,
        binary: MakeBinary | None,
    ) -> Push:
        """The push of channel message ``raw`` at ``position`` (``binary``: makes the
        msgpack form of the framed JSON, when the endpoint offers msgpack)."""
        framed = with_position(raw, position)
        return Push(framed.decode(), len(framed), None if binary is None else binary(framed))

    def deliver(
        self,
        channel: str,
        targets: tuple[Connection, ...],
        push: Push,
        offset: int,
        exclude: frozenset[str],
        predicate: Callable[[Connection], bool] | None,
    ) -> int:
        """Deliver the push at ``offset`` to ``channel``'s live subscribers here; hold it
        for those resuming. A resuming connection gets nothing live (it would overtake
        its replay, say through a pattern it also holds); one that has just gone live
        skips offsets its replay covered (a read and the live stream travel apart)."""
        held = self._held.get(channel)
        floors = self._floors.get(channel)
        if held or floors:
            targets = tuple(self._live(channel, targets, offset, held, floors))
        sent = self.manager.deliver(targets, push, exclude, predicate)
        if held:
            for conn, pushes in held.items():
                if chosen(conn, exclude, predicate):
                    pushes.append((offset, push))
        return sent

    def _live(
        self,
        channel: str,
        targets: tuple[Connection, ...],
        offset: int,
        held: dict[Connection, list[tuple[int, Push]]] | None,
        floors: dict[Connection, int] | None,
    ) -> list[Connection]:
        live = []
        for conn in targets:
            if held and conn in held:
                continue
            if floors and conn in floors:
                if offset <= floors[conn]:
                    continue
                del floors[conn]  # past its replay: plain live from now on
            live.append(conn)
        if floors is not None and not floors:
            del self._floors[channel]
        return live

    def forget(self, conn: Connection) -> None:
        """``conn`` has gone: drop what is kept for it."""
        for table in (self._held, self._floors):
            for channel in [c for c, by_conn in table.items() if conn in by_conn]:
                del table[channel][conn]
                if not table[channel]:
                    del table[channel]

    def gap(self, channel: str, position: Position) -> bool:
        """Whether continuity broke before ``position`` for this node's subscribers of
        ``channel``: it missed publications (its link to the broker dropped meanwhile;
        offsets come one by one, in order, to every node with subscribers), or the
        store started a new epoch (it lost what it kept)."""
        seen = self._seen.get(channel)
        self._seen[channel] = position
        if seen is None:
            return False
        return seen.epoch != position.epoch or position.offset > seen.offset + 1

    def unseen(self, channel: str) -> None:
        """No subscriber of ``channel`` here any more: stop following its offsets."""
        self._seen.pop(channel, None)

    # -- resuming -------------------------------------------------------------------------

    def resuming(self, conn: Connection) -> int:
        """How many subscriptions ``conn`` has being resumed now."""
        return sum(conn in held for held in self._held.values())

    def resuming_on(self, conn: Connection, channel: str) -> bool:
        """Whether ``conn`` is resuming ``channel`` now."""
        return conn in self._held.get(channel, ())

    def resuming_channel(self, channel: str) -> bool:
        """Whether a connection is resuming ``channel`` here now."""
        return bool(self._held.get(channel))

    def failing(self, channel: str, subscribers: tuple[Connection, ...]) -> list[Connection]:
        """Every connection getting ``channel`` here, live or resuming (to be closed
        because this node missed publications); the channel's offsets start afresh."""
        self._seen.pop(channel, None)
        return [*subscribers, *self._held.get(channel, ())]

    async def resume(
        self,
        conn: Connection,
        channel: str,
        since: Position | None,
        join: Callable[[], Any],
        go_live: Callable[[], object],
        binary: MakeBinary | None,
    ) -> tuple[Position, bool | None, Callable[[], None]]:
        """Start subscribing ``conn`` to ``channel`` (a name with history), from ``since``
        or from now, exactly at the seam: live publications are held for it, the store
        is read, and the publications after ``since`` are queued for it.

        Args:
            join: awaited first: puts ``conn`` where live publications reach this node.
            go_live: adds ``conn`` to the subscribers live publications are delivered
                to (by ``finish``).

        Returns:
            The position the replay ends at, whether the publications after ``since``
            were all replayed (None without ``since``; False also when the replay
            would not fit the connection's queue), and ``finish``: to call once the
            answer is queued behind the replay; it queues what was held and makes the
            subscription live.

        Raises:
            BrokerUnavailable: the store cannot be read; nothing is held for ``conn``.
        """
        held: list[tuple[int, Push]] = []
        self._held.setdefault(channel, {})[conn] = held
        try:
            await join()
            stream = self.stream(channel)
            if since is None:
                window = await self.manager.cluster.history.read(stream, limit=0)
            else:
                # All that is kept after it: the store bounds the window, not this node.
                window = await self.manager.cluster.history.read(stream, since=since.offset)
        except BaseException:
            self._release(channel, conn)
            raise
        recovered = None if since is None else window.follows(since)
        last = since.offset if since is not None and recovered else window.position.offset
        if recovered:
            try:
                last = await self._replay(conn, window, last, binary)
            except BaseException:
                self._release(channel, conn)
                raise
        position = Position(last, window.position.epoch)

        def finish() -> None:
            self._release(channel, conn)
            if conn.closed:
                return
            top = last
            for offset, push in held:
                if offset > top:
                    self.manager.deliver((conn,), push)
                    top = offset
            self._floors.setdefault(channel, {})[conn] = top
            go_live()

        return position, recovered, finish

    async def _replay(
        self, conn: Connection, window: Window, last: int, binary: MakeBinary | None
    ) -> int:
        """Queue the publications of ``window`` after ``last`` for ``conn``, in order; a
        window bigger than half its queue goes in parts, each once the part before has
        been sent (the live ones are held meanwhile), so that a client that reads takes
        any window without being taken for a slow consumer. Returns the last offset."""
        config = self.manager.config
        outbox = conn.outbox
        part_messages = part_bytes = 0
        for publication in window.publications:
            if publication.offset <= last:
                continue
            size = len(publication.data) + POSITION_ROOM
            if part_messages and (
                outbox.queued_messages + 1 > config.send_queue_messages // 2
                or outbox.queued_bytes + size > config.send_queue_bytes // 2
            ):
                # A slow consumer's usual limit applies: sent within the send timeout.
                if not await outbox.flush(config.send_timeout):
                    # Too slow to take its replay: what is left of it must not be
                    # skipped, so the connection ends and its client resumes later.
                    conn.ws.fail(CloseCode.TRY_AGAIN_LATER, "slow consumer")
                    return last
                part_messages = part_bytes = 0
            self._send(conn, publication, window, binary)
            part_messages += 1
            part_bytes += size
            last = publication.offset
        return last

    async def read(self, channel: str, since: Position | None, limit: int | None) -> History:
        """The kept publications of ``channel`` (the last ``limit``, or the first ``limit``
        after ``since``), and whether ``since`` could be followed.

        Raises:
            ValueError: ``channel`` keeps no history.
            BrokerUnavailable: the store cannot be read.
        """
        if self.policy(channel) is None:
            raise ValueError(f"{channel!r} keeps no history")
        stream = self.stream(channel)
        if since is None:
            window = await self.manager.cluster.history.read(stream, limit=limit)
            return History(_messages(window), window.position, None)
        window = await self.manager.cluster.history.read(stream, since=since.offset, limit=limit)
        if not window.follows(since):
            return History([], window.position, False)
        return History(_messages(window), window.position, True)

    def _send(
        self,
        conn: Connection,
        publication: Publication,
        window: Window,
        binary: MakeBinary | None,
    ) -> None:
        position = Position(publication.offset, window.position.epoch)
        with contextlib.suppress(ValueError):  # kept by another version: skipped
            self.manager.deliver((conn,), self.push(publication.data, position, binary))

    def _release(self, channel: str, conn: Connection) -> None:
        held = self._held.get(channel)
        if held is not None:
            held.pop(conn, None)
            if not held:
                del self._held[channel]


def _messages(window: Window) -> list[KeptMessage]:
    found = []
    for publication in window.publications:
        try:
            data = json_loads(publication.data)["params"]["data"]
        except (DecodeError, TypeError, KeyError):
            continue  # not a channel message of this version: skipped
        found.append(KeptMessage(publication.offset, data))
    return found
