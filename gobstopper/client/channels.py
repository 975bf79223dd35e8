"""The channel side of the Python client: subscriptions, their positions on channels
with history, subscribing again from them on every new connection, and the presence
views that ride on those subscriptions (``presence.py``).

``Channels`` is a part of ``Client`` (a base class of it), kept in a module of its own:
it holds the subscriptions by pattern and everything that asks the server about them;
``Client`` gives it the requests (``call``, ``_ask``) and the connection's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from ..messages import protocol
from ..messages.channels import is_pattern, valid_channel, valid_pattern
from .link import Link
from .presence import PresenceCallback, PresenceMember, PresenceView
from .subscription import CallError, History, Position, Subscription

__all__ = ["Channels"]

logger = logging.getLogger("gobstopper.client")


class Channels:
    """Subscriptions of a client (see ``Client.subscribe``) and its presence views
    (``Client.presence``), which hold subscriptions of their own among the others."""

    # Given by Client.
    _link: Link
    _ids: Iterator[int]
    call: Callable[..., Awaitable[Any]]
    _ask: Callable[..., Awaitable[Any]]

    def _timeout(self, what: str, timeout: float | None) -> Exception:
        """The error of a wait that ran out of time (``Lifecycle`` words it)."""
        return TimeoutError(what)

    def __init__(self) -> None:
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        # Subscriptions whose own rpc.subscribe is on its way: a renewal leaves them to it.
        self._asking: set[Subscription] = set()

    async def subscribe(
        self, pattern: str, *, maxsize: int = 1000, since: Position | None = None
    ) -> Subscription:
        """Subscribe to a channel or pattern (``news.*``); active when this returns.

        On a channel name that keeps history on the server, the subscription's
        ``position`` follows the messages it queues, and every reconnection resubscribes
        from it: what was published meanwhile is queued first, in order, then the live
        messages. With ``since`` (a position saved earlier) the server replays what
        followed it before this returns. When the server cannot replay (``recovered:
        false``: too old, or its store lost continuity), iterating the subscription raises
        ``RecoveryFailed`` once, where the stream broke, and then goes on with the live
        messages.

        Raises:
            ValueError: not a channel name or pattern; ``since`` with a pattern.
            CallError: the server refused (access denied, too many subscriptions; -32602
                for ``since`` on a channel without history).
        """
        if not valid_pattern(pattern):
            raise ValueError(f"not a channel name or pattern: {pattern!r}")
        if since is not None and is_pattern(pattern):
            raise ValueError(f"since needs a channel name, not a pattern: {pattern!r}")
        sub = Subscription(self, pattern, maxsize, since)
        siblings = tuple(self._subscriptions.get(pattern, ()))
        self._subscriptions.setdefault(pattern, []).append(sub)
        try:
            if not siblings or since is not None:
                await self._subscribe_first(pattern, sub, since, first=not siblings)
            elif pattern in self._subscribing:
                await asyncio.shield(self._subscribing[pattern])
            else:  # it continues from where the others stand
                sub.position = _resume_position(siblings)
        except BaseException:
            self._unregister(sub)
            raise
        return sub

    async def presence(
        self,
        channel: str,
        *,
        on_join: PresenceCallback | None = None,
        on_update: PresenceCallback | None = None,
        on_leave: PresenceCallback | None = None,
        maxsize: int = 1000,
    ) -> PresenceView:
        """A live view of who is subscribed to ``channel`` (a channel that tracks presence
        on the server); it subscribes to the channel, sharing the subscription with the
        client's others of it. Close it with ``await view.close()`` or ``async with``.

        Examples:
            ```python
            async with await client.presence("room.lobby", on_join=greet) as room:
                print(room.users, room.connections)
            ```

        Raises:
            ValueError: not a channel name (a pattern, say), or the channel does not track
                presence (the view is closed then).
            CallError: the server refused the subscription.
        """
        if not valid_channel(channel):
            raise ValueError(f"presence needs a channel name (no pattern): {channel!r}")
        view = PresenceView(
            self, channel, on_join=on_join, on_update=on_update, on_leave=on_leave, maxsize=maxsize
        )
        sub = view.subscription
        siblings = tuple(self._subscriptions.get(channel, ()))
        self._subscriptions.setdefault(channel, []).append(sub)
        try:
            if not siblings:
                await self._subscribe_first(channel, sub, None, first=True)
            else:
                if channel in self._subscribing:  # its answer brings the state
                    await asyncio.shield(self._subscribing[channel])
                if not view.synced and not self._copy_presence(view, siblings):
                    # Only this connection's subscribe answer says where diffs start.
                    await self._subscribe_call(channel, None, [sub])
        except BaseException:
            self._unregister(sub)
            raise
        if not view.synced:
            await self.unsubscribe(sub)
            raise ValueError(f"channel {channel!r} does not track presence on the server")
        return view

    def _copy_presence(self, view: PresenceView, siblings: Iterable[Subscription]) -> bool:
        """Start ``view`` from another view of its channel that holds the current
        connection's state; False when there is none."""
        generation = self._link.state.generation
        return any(
            isinstance(sub, PresenceMember) and view.adopt(sub.view, generation) for sub in siblings
        )

    async def presence_state(self, channel: str) -> dict[str, Any]:
        """The presence state of ``channel`` across the server's cluster, read once:
        ``{"channel", "users": {user: [{"conn", "meta"}]}, "connections",
        "unique_users"}`` (for any channel; one that does not track presence still has
        its connections counted).

        Raises:
            ValueError: not a channel name.
            CallError: -32001 when this client may not subscribe to ``channel``.
        """
        if not valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        state = await self.call(protocol.PRESENCE, channel=channel)
        if not isinstance(state, dict):
            raise ValueError(f"not an {protocol.PRESENCE} answer: {state!r}")
        return state

    def _presence_diff(self, params: dict[str, Any]) -> None:
        """An ``rpc.presence_diff``, read on the current connection."""
        channel = params.get("channel")
        if not isinstance(channel, str):
            return
        generation = self._link.state.generation
        for sub in tuple(self._subscriptions.get(channel, ())):
            if isinstance(sub, PresenceMember):
                sub.view.apply(params, generation)

    async def _subscribe_first(
        self, pattern: str, sub: Subscription, since: Position | None, *, first: bool
    ) -> None:
        """Ask the server for ``sub``: the pattern's first subscription, or one that
        resumes from a position of its own."""
        if not first:
            await self._subscribe_call(pattern, since, [sub])
            return
        # A second subscriber to the pattern meanwhile waits for this answer.
        confirmed = asyncio.get_running_loop().create_future()
        self._subscribing[pattern] = confirmed
        try:
            await self._subscribe_call(pattern, since, [sub])
            confirmed.set_result(None)
        except BaseException as exc:
            confirmed.set_exception(exc)
            confirmed.exception()  # retrieved: it may have no other reader
            raise
        finally:
            del self._subscribing[pattern]

    def _unregister(self, sub: Subscription) -> bool:
        """Forget ``sub``; True if it was the pattern's last subscription."""
        subs = self._subscriptions.get(sub.pattern)
        if subs is None or sub not in subs:
            return False
        subs.remove(sub)
        if subs:
            return False
        del self._subscriptions[sub.pattern]
        return True

    async def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub``, and unsubscribe on the server once no other subscription of
        this client holds its pattern (what ``sub.close()`` does)."""
        sub.end()
        if not self._unregister(sub):
            return
        if self._link.state.connected:
            with contextlib.suppress(Exception):
                await self.call(protocol.UNSUBSCRIBE, sub.pattern)

    async def history(
        self, channel: str, limit: int | None = None, since: Position | None = None
    ) -> History:
        """The publications a channel that keeps history still holds: the last ``limit``
        (the server's default when None), or those after ``since``.

        Example: ``page = await client.history("feed", since=sub.position)``

        Raises:
            ValueError: not a channel name; an answer without a position.
            CallError: -32001 when this client may not subscribe to ``channel``, -32602
                when the channel keeps no history.
        """
        if not valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        position = None if since is None else (since.offset, since.epoch)
        params = protocol.history_params(channel, limit, position)
        return History.parse(channel, await self.call(protocol.HISTORY, **params))

    async def publish(self, channel: str, data: Any = None, *, echo: bool = False) -> int:
        """Publish to a channel (if the server lets clients publish there); returns the
        subscribers reached on the server's node."""
        return int(await self.call(protocol.PUBLISH, channel=channel, data=data, echo=echo))

    async def _resubscribe(self, pattern: str) -> Any:
        """Subscribe again to ``pattern``, since its subscriptions' position if they have
        one (the server then replays what was missed, or says it cannot)."""
        position = _resume_position(self._renewable(pattern))
        if position is not None:
            try:
                return await self._subscribe_call(pattern, position)
            except CallError as exc:
                if exc.code != protocol.INVALID_PARAMS:
                    raise
                # The channel keeps no history any more (the server's configuration
                # changed): the break is marked already; subscribe without a position.
        return await self._subscribe_call(pattern, None)

    def _renewable(self, pattern: str) -> list[Subscription]:
        """The subscriptions of ``pattern`` a renewal subscribes again: not those still
        waiting for their own answer (their request goes to the new connection)."""
        return [s for s in self._subscriptions.get(pattern, ()) if s not in self._asking]

    async def _subscribe_call(
        self, pattern: str, since: Position | None, asked: list[Subscription] | None = None
    ) -> Any:
        """``rpc.subscribe`` for ``asked`` (None: every subscription of the pattern, a
        renewal); its answer updates their positions as it is read."""
        params = protocol.subscribe_params(
            pattern, None if since is None else (since.offset, since.epoch)
        )
        message = protocol.request(protocol.SUBSCRIBE, params, next(self._ids))

        def on_answer(answer: protocol.Response) -> None:
            self._subscribed(pattern, since, asked, answer)

        self._asking.update(asked or ())
        try:
            return await self._ask(message, on_answer)
        finally:
            self._asking.difference_update(asked or ())

    def _subscribed(
        self,
        pattern: str,
        since: Position | None,
        asked: list[Subscription] | None,
        answer: protocol.Response,
    ) -> None:
        """A subscribe answer, applied before the frames after it: the replayed messages
        are queued already, the live ones are not yet."""
        if is_pattern(pattern):
            return  # positions and presence are a channel name's
        subs = self._subscriptions.get(pattern, [])
        if answer.error is None:
            # Any answer of the channel on this connection is newer than the diffs read
            # before it: every view of the channel starts over from its state.
            reply = answer.result if isinstance(answer.result, dict) else {}
            generation = self._link.state.generation
            for sub in tuple(subs):
                if isinstance(sub, PresenceMember):
                    sub.view.replace(reply.get("presence"), generation)
        targets = self._renewable(pattern) if asked is None else [s for s in asked if s in subs]
        if answer.error is not None:
            if since is not None and asked is None and answer.error.code == protocol.INVALID_PARAMS:
                for sub in targets:  # a renewal from a position the server cannot take
                    sub.break_continuity(None)
            return
        reply = answer.result if isinstance(answer.result, dict) else {}
        found = protocol.read_position(reply)
        position = Position(*found) if found is not None else None
        if since is not None and reply.get("recovered") is False:
            for sub in targets:
                sub.break_continuity(position)
        elif position is not None:
            for sub in targets:
                sub.position = position
        if position is not None:
            for sub in subs:
                if sub.position is None:  # joined while this answer was on its way
                    sub.position = position


def _resume_position(subs: Iterable[Subscription]) -> Position | None:
    """Where a channel's subscriptions resume from. They share their messages, so they
    stand at one position; should they not, the earliest (the others skip what they
    queued already)."""
    positions = [sub.position for sub in subs if sub.position is not None]
    return min(positions, key=lambda position: position.offset) if positions else None
