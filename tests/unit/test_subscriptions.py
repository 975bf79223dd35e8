"""The subscription index on its own: who a channel reaches, against a brute force."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gobstopper.messages.channels import matches
from gobstopper.messages.subscriptions import SubscriptionIndex

# Few segments, so that names and patterns often meet.
segment = st.sampled_from(["a", "b", "c"])
name = st.lists(segment, min_size=1, max_size=3).map(".".join)
pattern_segment = st.sampled_from(["a", "b", "*"])


@st.composite
def pattern(draw: st.DrawFn) -> str:
    segments = draw(st.lists(pattern_segment, min_size=1, max_size=3))
    if draw(st.booleans()):
        segments[-1] = "**"
    return ".".join(segments)


channel_or_pattern = st.one_of(name, pattern())
subscriber = st.integers(min_value=0, max_value=4)
operation = st.one_of(
    st.tuples(st.just("subscribe"), subscriber, channel_or_pattern),
    st.tuples(st.just("unsubscribe"), subscriber, channel_or_pattern),
    st.tuples(st.just("forget"), subscriber, st.just("")),
    st.tuples(st.just("targets"), st.just(0), name),
)


def brute_force(subscriptions: list[tuple[int, str]], channel: str) -> tuple[int, ...]:
    """Every subscriber whose subscription reaches ``channel``, at its first one."""
    found: dict[int, None] = {}
    for who, what in subscriptions:
        if what == channel or matches(what, channel):
            found.setdefault(who, None)
    return tuple(found)


@settings(max_examples=300)
@given(st.lists(operation, max_size=40), st.lists(name, min_size=1, max_size=5))
def test_targets_match_a_brute_force_across_changes(
    operations: list[tuple[str, int, str]], probes: list[str]
) -> None:
    index: SubscriptionIndex[int] = SubscriptionIndex(cache_size=4)  # small: caches cycle
    model: list[tuple[int, str]] = []  # (subscriber, channel or pattern), in order
    for op, who, what in operations:
        if op == "subscribe":
            added = index.subscribe(who, what)
            assert added is ((who, what) not in model)
            if added:
                model.append((who, what))
        elif op == "unsubscribe":
            removed = index.unsubscribe(who, what)
            assert removed is ((who, what) in model)
            if removed:
                model.remove((who, what))
        elif op == "forget":
            mine = [w for s, w in model if s == who]
            assert index.forget(who) == tuple(mine)
            model = [(s, w) for s, w in model if s != who]
        else:
            assert index.targets(what) == brute_force(model, what)
        for channel in probes:  # the caches are read and refilled between every change
            targets = index.targets(channel)
            assert targets == brute_force(model, channel)
            assert len(set(targets)) == len(targets)
        for who_ in range(5):
            mine = [w for s, w in model if s == who_]
            assert index.subscriptions(who_) == tuple(mine)
            assert index.count(who_) == len(mine)


def test_each_subscriber_once_in_subscription_order() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.subscribe("ann", "chat.**")
    index.subscribe("ben", "chat.lobby")
    index.subscribe("ann", "chat.lobby")  # ann again, through a second subscription
    index.subscribe("cat", "chat.*")
    index.subscribe("dan", "news.*")
    assert index.targets("chat.lobby") == ("ann", "ben", "cat")
    assert index.targets("chat.lobby.typing") == ("ann",)
    assert index.targets("news.sport") == ("dan",)
    assert index.targets("weather") == ()


def test_cached_targets_follow_every_change() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.subscribe("ann", "news.sport")
    first = index.targets("news.sport")
    assert index.targets("news.sport") is first  # cached until a change
    index.subscribe("ben", "news.*")  # a new pattern: matches computed before are stale
    assert index.targets("news.sport") == ("ann", "ben")
    index.unsubscribe("ann", "news.sport")
    assert index.targets("news.sport") == ("ben",)
    assert index.forget("ben") == ("news.*",)
    assert index.targets("news.sport") == ()
    index.subscribe("cat", "news.*")  # the pattern comes back
    assert index.targets("news.sport") == ("cat",)
    assert not index.unsubscribe("cat", "news.sport") and index.forget("nobody") == ()


def test_caches_stay_bounded() -> None:
    index: SubscriptionIndex[int] = SubscriptionIndex(cache_size=10)
    index.subscribe(1, "user.*")
    for i in range(100):
        assert index.targets(f"user.{i}") == (1,)
    assert len(index._targets) <= 10 and len(index._matching) <= 10
