"""Presence on the message layer: which channels track it, the state in a subscribe
answer, and the ``rpc.presence_diff`` pushes to a channel's subscribers on this node.

The manager keeps the replicas and computes the user-level changes (``gobstopper.
presence``); this module decides which channels' rooms it watches and turns each change
into a push. A connection subscribing to a tracked channel gets no diff until its
answer is queued with the state as it is then: every diff queued before the answer is
older than its state, every one after it newer (``docs/presence.md``).
"""

from __future__ import annotations

import logging
from typing import Any

from .._util import Throttle
from ..errors import MessageTooBig
from ..manager import WebSocketManager
from ..presence import PresenceDiff, PresenceState
from . import channels, protocol
from .pushes import CHANNEL_ROOM, Pushes

__all__ = ["ChannelPresence"]

logger = logging.getLogger("gobstopper.rpc")

#: Channel names whose tracking is remembered; past it the memo starts again (names may
#: be endless).
_MEMO = 10_000


class ChannelPresence:
    """The presence of one endpoint's channels.

    Args:
        manager: the endpoint's manager, which keeps the replicas.
        pushes: the endpoint's pushes (encoding, and its connections in a room).
    """

    def __init__(self, manager: WebSocketManager, pushes: Pushes) -> None:
        self._manager = manager
        self._pushes = pushes
        self._patterns: list[str] = []
        self._tracks: dict[str, bool] = {}  # by channel, bounded
        #: Connections subscribing to a tracked channel, by room, until their answer.
        self._joining: dict[str, set[str]] = {}
        self._throttle = Throttle(logger)
        manager.watch_presence(self._tracked_room, self._changed)

    def track(self, pattern: str) -> None:
        """Track the presence of every channel ``pattern`` matches (``RPC.track_presence``).

        Raises:
            ValueError: not a channel name or pattern.
        """
        if not channels.valid_pattern(pattern):
            raise ValueError(f"not a channel name or pattern: {pattern!r}")
        self._patterns.append(pattern)
        self._tracks.clear()
        self._manager.presence_tracker.rescan(self._manager.rooms())

    def tracks(self, channel: str) -> bool:
        """Whether ``channel`` (a name, not a pattern) tracks presence."""
        if not self._patterns:
            return False
        found = self._tracks.get(channel)
        if found is None:
            found = channels.valid_channel(channel) and any(
                pattern == channel
                or (channels.is_pattern(pattern) and channels.matches(pattern, channel))
                for pattern in self._patterns
            )
            if len(self._tracks) > _MEMO:
                self._tracks.clear()
            self._tracks[channel] = found
        return found

    # -- a subscription's answer -------------------------------------------------------

    def joining(self, channel: str, conn_id: str) -> None:
        """``conn_id`` subscribes to the tracked ``channel``: no diff reaches it until
        ``answer`` (or ``joined``, if there is no answer)."""
        self._joining.setdefault(CHANNEL_ROOM + channel, set()).add(conn_id)

    async def ready(self, channel: str) -> None:
        """Wait until this node's replica of ``channel``'s presence is loaded."""
        await self._manager.presence_tracker.ready(CHANNEL_ROOM + channel)

    def answer(self, answer: dict[str, Any], channel: str, conn_id: str) -> None:
        """Put ``channel``'s presence as it is now in a subscribe ``answer`` about to be
        queued, and let the diffs reach the connection from now on."""
        room = CHANNEL_ROOM + channel
        state = self._manager.presence_tracker.state(room) or PresenceState({}, 0)
        answer["presence"] = state.as_dict(channel)
        self.joined(channel, conn_id)

    def joined(self, channel: str, conn_id: str) -> None:
        """``conn_id`` gets ``channel``'s diffs from now on."""
        room = CHANNEL_ROOM + channel
        joining = self._joining.get(room)
        if joining is not None:
            joining.discard(conn_id)
            if not joining:
                del self._joining[room]

    # -- reading, and the pushes ---------------------------------------------------------

    async def read(self, channel: str) -> PresenceState:
        """``channel``'s presence across the cluster (``RPC.presence``).

        Raises:
            ValueError: not a channel name.
            BrokerUnavailable: the broker cannot be asked now.
        """
        if not channels.valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        return await self._manager.presence(CHANNEL_ROOM + channel)

    def _tracked_room(self, room: str) -> bool:
        return room.startswith(CHANNEL_ROOM) and self.tracks(room[len(CHANNEL_ROOM) :])

    def _changed(self, room: str, diff: PresenceDiff) -> None:
        """Push a change of a tracked channel's presence to its subscribers here."""
        channel = room[len(CHANNEL_ROOM) :]
        metas = [m.as_dict() for m in diff.metas]
        message = protocol.presence_diff(channel, diff.event, diff.user, metas)
        try:
            _, push = self._pushes.encode(message)
        except (TypeError, MessageTooBig) as exc:
            self._throttle.warning("a presence change of %r was not pushed: %s", channel, exc)
            return
        joining = frozenset(self._joining.get(room, ()))
        self._manager.deliver(self._pushes.event_targets(room, None), push, joining)
