"""The life-cycle state machine without sockets, and the server-side contract of a
WebSocket against a fake transport."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from gobstopper import CloseCode, ConnectionClosedError, WebSocketState
from gobstopper.connection import (
    IllegalTransition,
    Lifecycle,
    ServerConnection,
    sendable,
)
from gobstopper.transport.base import CLOSE, TEXT

from .fake_transport import FakeTransport, make

# -- the state machine ------------------------------------------------------------------


def test_a_new_connection_is_connecting() -> None:
    life = Lifecycle()
    assert life.state is WebSocketState.CONNECTING
    assert not life.closed and not life.accepted and not life.close_handed
    assert (life.code, life.reason, life.closed_by) == (None, "", "server")


def test_accept_then_close() -> None:
    life = Lifecycle()
    life.accept()
    assert life.state is WebSocketState.CONNECTED and life.accepted and not life.closed
    assert life.close(1001, "bye") is True
    assert life.state is WebSocketState.CLOSED and life.closed
    assert (life.code, life.reason, life.closed_by) == (1001, "bye", "server")
    assert life.accepted  # it was accepted, closed or not


def test_close_before_accept_is_a_refusal() -> None:
    life = Lifecycle()
    assert life.close(403) is True
    assert life.closed and not life.accepted and life.code == 403


def test_the_first_close_wins() -> None:
    life = Lifecycle()
    life.accept()
    assert life.close(1000, "", by="client") is True
    assert life.close(1011, "late", by="server") is False
    assert (life.code, life.reason, life.closed_by) == (1000, "", "client")


def test_the_close_is_handed_to_the_reader_once() -> None:
    life = Lifecycle()
    life.accept()
    life.close(1000)
    assert life.hand_close() is True
    assert life.hand_close() is False
    assert life.close_handed


def _connecting() -> Lifecycle:
    return Lifecycle()


def _connected() -> Lifecycle:
    life = Lifecycle()
    life.accept()
    return life


def _refused() -> Lifecycle:
    life = Lifecycle()
    life.close(403)
    return life


def _closed() -> Lifecycle:
    life = _connected()
    life.close(1000)
    return life


def _snapshot(life: Lifecycle) -> tuple[object, ...]:
    return tuple(getattr(life, name) for name in Lifecycle.__slots__)


@pytest.mark.parametrize(
    ("start", "step"),
    [
        (_connected, Lifecycle.accept),  # accepting twice
        (_refused, Lifecycle.accept),
        (_closed, Lifecycle.accept),
        (_closed, Lifecycle.check_accept),
        (_connecting, Lifecycle.hand_close),  # no close to hand over yet
        (_connected, Lifecycle.hand_close),
    ],
)
def test_illegal_transitions_raise_and_change_nothing(
    start: Callable[[], Lifecycle], step: Callable[[Lifecycle], object]
) -> None:
    life = start()
    before = _snapshot(life)
    with pytest.raises(IllegalTransition):
        step(life)
    assert _snapshot(life) == before


def test_an_illegal_transition_is_a_runtime_error_saying_the_state() -> None:
    life = Lifecycle()
    life.accept()
    with pytest.raises(RuntimeError, match="cannot accept a connection that is connected"):
        life.accept()


def test_close_names_a_side() -> None:
    life = Lifecycle()
    with pytest.raises(ValueError, match="closed by"):
        life.close(1000, by="nobody")  # type: ignore[arg-type]
    assert not life.closed


def test_closed_and_state_agree_in_every_state() -> None:
    life = Lifecycle()
    seen = []
    for step in (lambda: None, life.accept, lambda: life.close(1000)):
        step()
        assert life.closed is (life.state is WebSocketState.CLOSED)
        assert (life.code is None) is not life.closed
        seen.append(life.state)
    assert seen == [WebSocketState.CONNECTING, WebSocketState.CONNECTED, WebSocketState.CLOSED]
    assert "closed 1000 by the server" in repr(life)


def test_sendable_close_codes() -> None:
    assert all(sendable(c) for c in (1000, 1001, 1011, 1013, 3000, 4999))
    assert not any(sendable(c) for c in (999, 1004, 1005, 1006, 1015, 2999, 5000, 403))


# -- the WebSocket's views of it ----------------------------------------------------------


async def test_websocket_state_is_a_view_of_its_life_cycle() -> None:
    ws, t = make()
    assert ws.connection_state is WebSocketState.CONNECTING and not ws.accepted
    await ws.accept()
    assert ws.connection_state is WebSocketState.CONNECTED and ws.accepted and not ws.closed
    t.push(CLOSE, 1000)
    assert ws.closed and ws.close_code == 1000 and ws.closed_by == "client" and ws.accepted
    with pytest.raises(AttributeError):
        ws.closed_by = "server"  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="cannot accept a connection that is closed"):
        await ws.accept()


async def test_closed_error_needs_a_closed_connection() -> None:
    ws, _ = make()
    await ws.accept()
    with pytest.raises(RuntimeError, match="not closed"):
        ws.closed_error()
    await ws.close(1000)
    assert ws.closed_error().code == 1000


# -- the contract app, manager and outbox use ---------------------------------------------


async def test_fail_closes_at_once_and_finish_sends_its_code() -> None:
    ws, t = make()
    await ws.accept()
    ws.fail(CloseCode.POLICY_VIOLATION, "limit")
    assert ws.closed and ws.close_code == CloseCode.POLICY_VIOLATION and ws.closed_by == "server"
    with pytest.raises(ConnectionClosedError):
        await ws.send_text("x")
    await ws.finish(CloseCode.NORMAL_CLOSURE)  # a recorded code wins
    assert t.closed == (CloseCode.POLICY_VIOLATION, "limit")


async def test_finish_refuses_an_unanswered_handshake() -> None:
    ws, t = make()
    await ws.finish(CloseCode.NORMAL_CLOSURE)
    assert t.rejected == 403 and ws.close_code == 403 and not ws.accepted


async def test_close_within_closes_once() -> None:
    ws, t = make()
    await ws.accept()
    await asyncio.gather(
        ws.close_within(CloseCode.GOING_AWAY, "shutdown", 1.0),
        ws.close_within(CloseCode.NORMAL_CLOSURE, "", 1.0),
    )
    assert t.closed == (CloseCode.GOING_AWAY, "shutdown") and ws.close_code == 1001


async def test_close_callbacks_and_before_close_hooks() -> None:
    ws, _ = make()
    await ws.accept()
    events: list[str] = []

    async def flush() -> None:
        events.append("flushed")

    ws.add_before_close(flush)
    ws.add_close_callback(lambda conn: events.append(f"closed {conn.close_code}"))
    await ws.close(1000)
    assert events == ["flushed", "closed 1000"]
    ws.add_close_callback(lambda conn: events.append("late"))  # already closed: at once
    assert events[-1] == "late"


async def test_no_before_close_hook_when_the_client_closed() -> None:
    ws, t = make()
    await ws.accept()
    events: list[str] = []

    async def flush() -> None:
        events.append("flushed")

    ws.add_before_close(flush)
    t.push(CLOSE, 1000)
    await ws.close(1000)
    assert events == []


async def test_mark_broken_closes_without_sending() -> None:
    ws, t = make()
    await ws.accept()
    gone: list[ServerConnection] = []
    ws.add_close_callback(gone.append)
    ws.mark_broken(CloseCode.ABNORMAL_CLOSURE)
    assert gone == [ws] and ws.close_code == 1006 and t.closed is None


async def test_idle_state_and_outbox_facts() -> None:
    ws, t = make(receive_queue_messages=4)
    await ws.accept()
    assert ws.reads_ahead and not ws.reading_now and not ws.has_unread
    before = ws.last_received
    t.push(TEXT, "hi")
    assert ws.has_unread and ws.last_received >= before
    assert (await ws.receive()).text == "hi" and not ws.has_unread
    assert ws.client_address == "127.0.0.1:1" and ws.path == "/ws"
    assert ws.send_window == t.send_window
    text, _, errors = ws.senders()
    text("out")
    assert t.sent == ["out"] and errors


# -- no module reaches into the connection's private names ---------------------------------

_OWNERS = {"connection.py", "websocket.py"}


def test_no_module_reads_a_websockets_private_names() -> None:
    ws, _ = make()
    private: set[str] = set()  # the classes' names hold the slots: every field is there
    for cls in type(ws).__mro__:
        private |= {n for n in vars(cls) if n.startswith("_") and not n.startswith("__")}
    root = Path(__file__).resolve().parents[2] / "gobstopper"
    found = []
    for path in root.rglob("*.py"):
        if path.name in _OWNERS and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


class AtOnceTransport(FakeTransport):
    """A transport that closes without waiting, as granian's RSGI one does."""

    closes_at_once = True
    close_now_calls = 0

    def close_now(self, code: int, reason: str) -> None:
        self.close_now_calls += 1
        if self.closed is None:
            self.closed = (code, reason)

    async def close(self, code: int, reason: str) -> None:
        raise AssertionError("closes_at_once: close() must not be awaited")


async def test_a_transport_that_closes_at_once_needs_no_task() -> None:
    ws, t = make(AtOnceTransport())
    await ws.accept()
    tasks = len(asyncio.all_tasks())
    await ws.close_within(CloseCode.GOING_AWAY, "shutdown", 1.0)
    assert len(asyncio.all_tasks()) == tasks  # no close task was started
    await ws.close_within(CloseCode.NORMAL_CLOSURE, "", 1.0)
    await ws.finish(CloseCode.NORMAL_CLOSURE)
    assert isinstance(t, AtOnceTransport) and t.close_now_calls == 1
    assert t.closed == (CloseCode.GOING_AWAY, "shutdown") and ws.close_code == 1001


async def test_finish_closes_at_once_after_the_client_closed() -> None:
    ws, t = make(AtOnceTransport())
    await ws.accept()
    t.push(CLOSE, CloseCode.NO_STATUS_RCVD)
    assert [m async for m in ws] == []  # the usual end: no error
    await ws.finish(CloseCode.NORMAL_CLOSURE)
    # 1005 cannot go in a close frame: the answer says 1000; the code seen stays 1005.
    assert t.closed == (CloseCode.NORMAL_CLOSURE, "") and ws.close_code == 1005
    assert ws.closed_by == "client"


async def test_a_close_at_once_waits_for_a_handshake_when_asked() -> None:
    ws, _ = make(AtOnceTransport())
    await ws.accept()
    # At shutdown the client's reply is awaited: the task path, with close() awaited.
    with pytest.raises(AssertionError, match="must not be awaited"):
        await ws.close_within(CloseCode.GOING_AWAY, "", 1.0, handshake=0.1)
