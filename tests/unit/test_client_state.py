"""The client's connection state machine, without sockets: transitions, generations, and
the transitions it refuses."""

from __future__ import annotations

import asyncio

import pytest

from gobstopper._util import Backoff
from gobstopper.client import Client
from gobstopper.client.link import Link
from gobstopper.client.state import ConnectionState, IllegalTransition, Phase


def apply(state: ConnectionState, step: str) -> None:
    """One transition by name (``renewed`` for the current generation)."""
    if step == "renewed":
        state.renewed(state.generation)
    else:
        getattr(state, step)()


def ready_state() -> ConnectionState:
    state = ConnectionState()
    state.start()
    state.renewed(state.opened())
    return state


def test_a_connection_goes_from_idle_to_ready() -> None:
    seen: list[Phase] = []
    state = ConnectionState(seen.append)
    assert (state.phase, state.generation) == (Phase.IDLE, 0)
    assert not state.connected and not state.ready and not state.closed
    state.start()
    assert state.phase is Phase.CONNECTING and not state.connected
    assert state.opened() == 1
    assert state.phase is Phase.RENEWING and state.connected and not state.ready
    assert state.current(1) and not state.current(2)
    assert state.renewed(1)
    assert state.ready and state.connected and state.ready_on(None) and state.ready_on(1)
    assert seen == [Phase.CONNECTING, Phase.RENEWING, Phase.READY]


def test_each_connection_gets_the_next_generation() -> None:
    state = ready_state()
    state.lost()
    assert state.phase is Phase.CONNECTING and not state.current(1)
    state.lost()  # a refused attempt: still connecting
    assert state.phase is Phase.CONNECTING
    assert state.opened() == 2
    assert not state.ready_on(2)
    assert state.renewed(2)
    assert state.ready_on(2) and state.ready_on(1) and not state.ready_on(3)


def test_renewal_of_an_old_connection_is_ignored() -> None:
    state = ConnectionState()
    state.start()
    first = state.opened()
    state.lost()
    assert not state.renewed(first)  # finished after its connection dropped
    assert state.phase is Phase.CONNECTING
    second = state.opened()
    assert not state.renewed(first)
    assert state.phase is Phase.RENEWING
    assert state.renewed(second)


def test_close_wins_from_every_phase() -> None:
    for steps in ([], ["start"], ["start", "opened"], ["start", "opened", "renewed"]):
        state = ConnectionState()
        for step in steps:
            apply(state, step)
        state.close()
        assert state.closed and not state.connected and not state.ready
        state.close()  # twice is harmless
        state.lost()  # the drop that closing caused changes nothing
        assert state.closed
        assert not state.renewed(state.generation)  # a renewal that finishes after close


def test_start_again_after_close_keeps_counting() -> None:
    state = ready_state()
    state.close()
    state.start()
    assert state.phase is Phase.CONNECTING
    assert state.opened() == 2


def test_a_transition_that_changes_nothing_wakes_nobody() -> None:
    seen: list[Phase] = []
    state = ConnectionState(seen.append)
    state.start()
    state.lost()  # connecting -> connecting
    state.close()
    state.close()
    assert seen == [Phase.CONNECTING, Phase.CLOSED]


def test_a_new_generation_wakes_waiters_even_in_the_same_phase() -> None:
    seen: list[Phase] = []
    state = ConnectionState(seen.append)
    state.start()
    state.opened()
    state.lost()
    state.opened()
    assert seen == [Phase.CONNECTING, Phase.RENEWING, Phase.CONNECTING, Phase.RENEWING]


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        ([], "opened"),
        ([], "lost"),
        (["start"], "start"),
        (["start", "opened"], "opened"),
        (["start", "opened"], "start"),
        (["start", "opened", "renewed"], "renewed"),
        (["start", "opened", "renewed"], "opened"),
        (["close"], "opened"),
    ],
)
def test_illegal_transitions_raise(steps: list[str], illegal: str) -> None:
    state = ConnectionState()
    for step in steps:
        apply(state, step)
    before = (state.phase, state.generation)
    with pytest.raises(IllegalTransition):
        apply(state, illegal)
    assert (state.phase, state.generation) == before


async def test_the_link_wakes_its_waiters_at_each_transition() -> None:
    """The one future per transition, driven by hand: no socket, no reconnection loop."""
    unused = lambda *_: None  # noqa: E731  # nothing opens, arrives or drops here
    link = Link(
        "ws://127.0.0.1:9/rpc", Backoff(0.1, 1), on_open=unused, on_frame=unused, on_lost=unused
    )
    state = link.state
    with pytest.raises(RuntimeError):
        await link.socket()  # never started
    state.start()
    socket = asyncio.ensure_future(link.socket())
    second = asyncio.ensure_future(link.wait_for(lambda: state.ready_on(2)))
    cancelled = asyncio.ensure_future(link.wait_for(lambda: state.ready_on(2)))
    await asyncio.sleep(0)
    cancelled.cancel()  # leaving must not cancel what the others wait on
    assert not socket.done()
    generation = state.opened()
    assert (await asyncio.wait_for(socket, 1))[1] == generation == 1
    gone = asyncio.ensure_future(link.gone(1))
    state.renewed(1)
    await asyncio.sleep(0)
    assert not second.done() and not gone.done()
    state.lost()
    await asyncio.wait_for(gone, 1)
    state.renewed(state.opened())
    await asyncio.wait_for(second, 1)
    third = asyncio.ensure_future(link.wait_for(lambda: state.ready_on(3)))
    later = asyncio.ensure_future(link.socket())
    state.lost()
    await asyncio.sleep(0)
    await link.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(later, 1)
    assert not third.done()  # its condition does not hold: it waits on, as asked
    third.cancel()


async def test_a_client_says_connect_first_and_keeps_its_settings() -> None:
    client = Client("ws://127.0.0.1:9/rpc", backoff=0.2, max_backoff=3.0)
    with pytest.raises(RuntimeError, match="connect"):
        await client.ready()  # never started: it would wait for ever
    assert (client.url, client.backoff, client.max_backoff) == ("ws://127.0.0.1:9/rpc", 0.2, 3.0)
    with pytest.raises(AttributeError):
        client.backoff = 1.0  # type: ignore[misc]  # fixed at creation: a change would be ignored
