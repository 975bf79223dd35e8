"""A live view of who is in a channel, for the Python client: its users and their
connections' metas, kept up to date by the server's diffs and across reconnections.

A ``PresenceView`` holds a subscription to the channel, one of the client's
subscriptions of it (``Channels``): the server answers each ``rpc.subscribe`` of a
channel that tracks presence with the channel's presence state right after this
connection joined, queued behind what was pushed before it, so every
``rpc.presence_diff`` read after the answer is newer than it and every one read before it
on that connection is older. The view therefore replaces its state with each answer (the
first, or a reconnection's) and applies by assignment only the diffs read after the
answer of the current connection.

Callbacks and the iterator see what changed in what the view shows: a state that
replaces another yields join, update and leave for the differences only, so a
reconnection neither misses a change nor repeats one.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from .._util import TaskSet
from .subscription import ChannelMessage, RecoveryFailed, Subscription

if TYPE_CHECKING:
    from .channels import Channels

__all__ = ["PresenceCallback", "PresenceChange", "PresenceMember", "PresenceView"]

logger = logging.getLogger("gobstopper.client")

#: Called with ``(user, metas)``; a coroutine function is run as a task.
PresenceCallback = Callable[[str, list[dict[str, Any]]], Any]
Event = Literal["join", "update", "leave"]
_EVENTS: tuple[Event, ...] = ("join", "update", "leave")


@dataclass(frozen=True)
class PresenceChange:
    """One change in what a ``PresenceView`` shows.

    Attributes:
        event: ``join`` (the user's first connection came), ``update`` (the user gained
            or lost a connection, or a meta changed) or ``leave`` (its last one went).
        user: the user.
        metas: the user's connections after the change (for ``leave``: before it), each
            ``{"conn": id, "meta": {...}}``, sorted by conn id.
    """

    event: Event
    user: str
    metas: list[dict[str, Any]]


class PresenceView:
    """Who is subscribed to one channel that tracks presence (``Client.presence()``).

    Attributes:
        channel: the channel.
        users: each user present -> its connections' metas (``[{"conn", "meta"}]``).
        dropped: changes the iterator lost because nobody read them (``maxsize``).

    Callbacks ``(user, metas)``, given here or added with ``on_join()``, ``on_update()``
    and ``on_leave()``, may be coroutine functions (run as tasks); what they raise is
    logged. The first state fires ``join`` for every user in it, to the callbacks given
    here (``users`` already holds them when ``Client.presence()`` returns). ``async for
    change in view`` yields the same changes as ``PresenceChange``s, from a queue of
    ``maxsize`` that drops the oldest when nobody reads it; it ends with ``close()``.
    """

    def __init__(
        self,
        client: Channels,
        channel: str,
        *,
        on_join: PresenceCallback | None = None,
        on_update: PresenceCallback | None = None,
        on_leave: PresenceCallback | None = None,
        maxsize: int = 1000,
    ) -> None:
        self.channel = channel
        self.users: dict[str, list[dict[str, Any]]] = {}
        self.dropped = 0
        #: The subscription that keeps the channel subscribed for this view.
        self.subscription = PresenceMember(client, channel, self)
        self._anonymous = 0  # connections without a user, as of the last state
        self._callbacks: dict[Event, list[PresenceCallback]] = {e: [] for e in _EVENTS}
        for event, callback in zip(_EVENTS, (on_join, on_update, on_leave), strict=True):
            if callback is not None:
                self._callbacks[event].append(callback)
        # The generation of the connection whose subscribe answer the state comes from:
        # diffs read on any other connection are ignored. None: no state (yet).
        self._synced: int | None = None
        self._maxsize = maxsize
        self._changes: collections.deque[PresenceChange | None] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._tasks = TaskSet(logger, "a presence callback")

    def __repr__(self) -> str:
        return f"<PresenceView {self.channel!r} users={self.unique_users}>"

    @property
    def connections(self) -> int:
        """The channel's connections, with or without a user. Those of users follow the
        diffs; those without a user produce none, so they count as of the last state."""
        return self._anonymous + sum(len(metas) for metas in self.users.values())

    @property
    def unique_users(self) -> int:
        """How many users are present (``len(users)``)."""
        return len(self.users)

    @property
    def synced(self) -> bool:
        """Whether the view holds a state from the server (False when the channel does
        not track presence, or before the first answer)."""
        return self._synced is not None

    def on_join(self, callback: PresenceCallback) -> None:
        """Call ``callback(user, metas)`` when a user comes (its first connection)."""
        self._callbacks["join"].append(callback)

    def on_update(self, callback: PresenceCallback) -> None:
        """Call ``callback(user, metas)`` when a present user's connections or metas
        change (a second tab is an update, not a join)."""
        self._callbacks["update"].append(callback)

    def on_leave(self, callback: PresenceCallback) -> None:
        """Call ``callback(user, metas)`` when a user's last connection goes (``metas``:
        those it had)."""
        self._callbacks["leave"].append(callback)

    async def close(self) -> None:
        """Stop following the channel: unsubscribe (unless another subscription of the
        client holds it) and end the iterator. Callbacks are no longer called."""
        await self.subscription.close()

    async def __aenter__(self) -> PresenceView:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> PresenceView:
        return self

    async def __anext__(self) -> PresenceChange:
        while not self._changes:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait((self._waiter,))  # not await: see Subscription.__anext__
        change = self._changes[0]
        if change is None:
            raise StopAsyncIteration  # left in place: every later read ends too
        self._changes.popleft()
        return change

    # -- fed by the client ---------------------------------------------------------------

    def replace(self, state: Any, generation: int) -> None:
        """A subscribe answer's ``presence`` (None when the answer had none) read on
        connection ``generation``: it replaces the state; what differs is announced."""
        users = _users(state.get("users")) if isinstance(state, dict) else None
        if users is None:
            if self._synced is not None:
                logger.warning("%r no longer tracks presence on the server", self.channel)
            self._synced = None
            users = {}
        else:
            self._synced = generation
        previous, self.users = self.users, dict(users)
        connections = state.get("connections") if isinstance(state, dict) else None
        members = sum(len(metas) for metas in users.values())
        self._anonymous = max(0, connections - members) if _is_int(connections) else 0
        for user, metas in previous.items():
            if user not in users:
                self._announce("leave", user, metas)
        for user, metas in users.items():
            before = previous.get(user)
            if before is None:
                self._announce("join", user, metas)
            elif before != metas:
                self._announce("update", user, metas)

    def adopt(self, other: PresenceView, generation: int) -> bool:
        """Start from ``other``'s state (a view of the same channel) if it comes from
        connection ``generation``'s answer; False otherwise."""
        if other._synced is None or other._synced != generation:
            return False
        self.replace(other.state(), generation)
        return True

    def state(self) -> dict[str, Any]:
        """What the view shows, in the shape of a presence state (``rpc.presence``)."""
        return {
            "channel": self.channel,
            "users": {user: list(metas) for user, metas in self.users.items()},
            "connections": self.connections,
            "unique_users": self.unique_users,
        }

    def apply(self, diff: Any, generation: int) -> None:
        """An ``rpc.presence_diff``'s params read on connection ``generation``: applied by
        assignment if the state comes from that connection's answer (else it is older)."""
        if self._synced != generation or not isinstance(diff, dict):
            return
        event, user, metas = diff.get("event"), diff.get("user"), diff.get("metas")
        if not isinstance(user, str) or not _is_metas(metas):
            logger.warning("ignored a malformed presence diff for %r: %r", self.channel, diff)
            return
        before = self.users.get(user)
        if event == "leave":
            if before is not None:
                del self.users[user]
                self._announce("leave", user, before)
        elif event in ("join", "update"):
            self.users[user] = metas
            if before is None:
                self._announce("join", user, metas)
            elif before != metas:
                self._announce("update", user, metas)
        else:
            logger.warning("ignored a presence diff of unknown event %r", event)

    def ended(self) -> None:
        """The subscription ended (closed, or refused on a reconnection)."""
        if not self._closed:
            self._closed = True
            self._queue(None)

    def _announce(self, event: Event, user: str, metas: list[dict[str, Any]]) -> None:
        if self._closed:
            return
        self._queue(PresenceChange(event, user, list(metas)))
        for callback in tuple(self._callbacks[event]):
            try:
                result = callback(user, list(metas))
                if inspect.isawaitable(result):
                    self._tasks.spawn(result)
            except Exception:
                logger.exception("presence callback for %s of %r failed", event, user)

    def _queue(self, change: PresenceChange | None) -> None:
        if change is not None and 0 < self._maxsize <= len(self._changes):
            self._changes.popleft()
            self.dropped += 1
        self._changes.append(change)
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set_result(None)


class PresenceMember(Subscription):
    """A ``PresenceView``'s subscription: it keeps the channel subscribed (and, on a
    channel with history, its position, so that a renewal resumes where the client's
    other subscriptions stand), and queues nothing."""

    def __init__(self, client: Channels, channel: str, view: PresenceView) -> None:
        super().__init__(client, channel, 0)
        self.view = view

    def _put(self, item: ChannelMessage | RecoveryFailed | None) -> None:
        if item is None:
            self.view.ended()


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_metas(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def _users(value: Any) -> dict[str, list[dict[str, Any]]] | None:
    """The ``users`` of a presence state, or None when it is not of that shape."""
    if not isinstance(value, dict):
        return None
    if not all(isinstance(u, str) and _is_metas(m) for u, m in value.items()):
        return None
    return value
