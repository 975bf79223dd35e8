"""Which subscribers a channel's publication reaches: the subscription index, pure.

Subscribers subscribe to exact channel names (``news.sport``) and to patterns
(``news.*``, ``chat.**``, see ``channels``). A publication on a channel reaches every
subscriber of that name and of every pattern matching it, each subscriber once, in
subscription order (the order of its earliest subscription that matches).

Publications far outnumber subscription changes, so what a channel reaches is computed
once and kept as a tuple until the next change, as the manager does for rooms; which
patterns match a channel is kept too, until a pattern appears or disappears. Both
caches are bounded: channel names may be endless (one per user, per document...).

Nothing here awaits or does I/O; the index is generic over the subscriber type (the
message layer uses the manager's ``Connection``), so it is tested on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

from . import channels

__all__ = ["SubscriptionIndex"]

S = TypeVar("S", bound=Hashable)


class SubscriptionIndex(Generic[S]):
    """Subscribers by channel name and by pattern.

    Args:
        cache_size: channels whose targets (and matching patterns) are kept; past it the
            cache starts over.
    """

    __slots__ = (
        "_by_subscriber",
        "_cache_size",
        "_exact",
        "_matching",
        "_order",
        "_patterns",
        "_targets",
    )

    def __init__(self, cache_size: int = 10_000) -> None:
        self._cache_size = cache_size
        # channel or pattern -> {subscriber: order of its subscription}, in that order.
        self._exact: dict[str, dict[S, int]] = {}
        self._patterns: dict[str, dict[S, int]] = {}
        # subscriber -> its channels and patterns, in subscription order.
        self._by_subscriber: dict[S, dict[str, None]] = {}
        self._order = itertools.count()
        self._matching: dict[str, tuple[str, ...]] = {}  # channel -> patterns matching it
        self._targets: dict[str, tuple[S, ...]] = {}  # channel -> subscribers it reaches

    def subscribe(self, subscriber: S, channel: str) -> bool:
        """Add a subscription to a channel name or a pattern (checked by the caller with
        ``channels.valid_pattern``); False if ``subscriber`` had it already."""
        mine = self._by_subscriber.setdefault(subscriber, {})
        if channel in mine:
            return False
        mine[channel] = None
        index = self._patterns if channels.is_pattern(channel) else self._exact
        subscribers = index.setdefault(channel, {})
        if not subscribers and index is self._patterns:
            self._matching.clear()  # a new pattern: the matches computed before miss it
        subscribers[subscriber] = next(self._order)
        self._targets.clear()
        return True

    def unsubscribe(self, subscriber: S, channel: str) -> bool:
        """Remove a subscription; False if ``subscriber`` did not have it."""
        mine = self._by_subscriber.get(subscriber)
        if mine is None or channel not in mine:
            return False
        del mine[channel]
        if not mine:
            del self._by_subscriber[subscriber]
        self._drop(subscriber, channel)
        return True

    def forget(self, subscriber: S) -> tuple[str, ...]:
        """Remove every subscription of ``subscriber`` (it is gone); return them."""
        mine = self._by_subscriber.pop(subscriber, None)
        if not mine:
            return ()
        for channel in mine:
            self._drop(subscriber, channel)
        return tuple(mine)

    def subscriptions(self, subscriber: S) -> tuple[str, ...]:
        """The channels and patterns of ``subscriber``, in subscription order."""
        return tuple(self._by_subscriber.get(subscriber, ()))

    def count(self, subscriber: S) -> int:
        """How many channels and patterns ``subscriber`` holds."""
        mine = self._by_subscriber.get(subscriber)
        return 0 if mine is None else len(mine)

    def targets(self, channel: str) -> tuple[S, ...]:
        """The subscribers a publication on ``channel`` (a name) reaches: each once, in
        subscription order."""
        targets = self._targets.get(channel)
        if targets is not None:
            return targets
        sources = [self._exact[channel]] if channel in self._exact else []
        if self._patterns:
            sources.extend(self._patterns[p] for p in self._matching_patterns(channel))
        if not sources:
            targets = ()
        elif len(sources) == 1:
            targets = tuple(sources[0])  # already in subscription order, each once
        else:
            first: dict[S, int] = {}
            for subscribers in sources:
                for subscriber, order in subscribers.items():
                    if order < first.get(subscriber, order + 1):
                        first[subscriber] = order
            targets = tuple(sorted(first, key=first.__getitem__))
        if len(self._targets) >= self._cache_size:
            self._targets.clear()
        self._targets[channel] = targets
        return targets

    def _matching_patterns(self, channel: str) -> tuple[str, ...]:
        patterns = self._matching.get(channel)
        if patterns is None:
            patterns = tuple(p for p in self._patterns if channels.matches(p, channel))
            if len(self._matching) >= self._cache_size:
                self._matching.clear()
            self._matching[channel] = patterns
        return patterns

    def _drop(self, subscriber: S, channel: str) -> None:
        index = self._patterns if channels.is_pattern(channel) else self._exact
        subscribers = index.get(channel)
        if subscribers is None:
            return
        subscribers.pop(subscriber, None)
        self._targets.clear()
        if not subscribers:
            del index[channel]
            if index is self._patterns:
                self._matching.clear()  # a pattern gone: the matches computed before hold it
