"""The NATS broker's pure parts: names as subjects and keys, and offset order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gobstopper.brokers.nats.order import StreamOrder
from gobstopper.brokers.nats.subjects import MAX_TOKEN, SubjectError, subject, token, untoken


@given(st.text())
def test_a_name_is_one_bounded_token_and_distinct_from_any_other(name: str) -> None:
    one = token(name)
    assert one and not set(one) & set(" .*>\t\r\n") and len(one) <= MAX_TOKEN
    if not one.startswith("=H"):
        assert untoken(one) == name  # a short name comes back
    assert token(name + "x") != one


def test_a_long_name_is_a_digest_that_nats_can_carry() -> None:
    long = "lobby " * 1000  # escaped, far past the 4 KiB command line NATS allows
    assert token(long).startswith("=H") and len(token(long)) == 66
    assert token(long) != token(long + " ") and len(subject("p", "room:" + long)) < 100


def test_rooms_and_channels_map_onto_subjects() -> None:
    assert subject("p", "all") == "p.all"
    assert subject("p", "room:lobby 1") == "p.room.lobby=201"
    assert subject("p", "room:a.*") == "p.room.a=2E=2A"  # a room is one literal token
    assert subject("p", "chan:news.*") == "p.chan.news.*"
    assert subject("p", "chan:chat.**") == "p.chan.chat.>"
    assert subject("p", "chan:prices.>") == "p.chan.prices.=3E"  # not a wildcard
    for bad in ("chan:news..sport", "chan:a.**.b", "chan:n*ws"):
        with pytest.raises(SubjectError):
            subject("p", bad)


def test_early_arrivals_wait_for_the_ones_before() -> None:
    order = StreamOrder[str]()
    assert order.arrive(5, "e") == (["e"], False)  # the first one seen: start there
    assert order.arrive(7, "g") == ([], True)
    assert order.arrive(8, "h") == ([], True)
    assert list(order.missing()) == [6]
    assert order.arrive(6, "f") == (["f", "g", "h"], False)
    assert order.arrive(6, "f") == ([], False)  # a copy


def test_what_never_comes_is_read_back_or_skipped() -> None:
    order = StreamOrder[str]()
    order.arrive(1, "a")
    order.arrive(5, "e")
    assert list(order.missing()) == [2, 3, 4]
    assert order.fill({2: "b", 4: "d"}) == ["b", "d", "e"]  # 3 is gone from the stream
    assert order.arrive(3, "c") == ([], False)  # too late: not handed on out of order
    assert order.arrive(6, "f") == (["f"], False)
