"""Two granian processes ("hosts") serving ``examples.rpc:app`` on one broker, and what
the tests of several brokers check on them: rooms, channels with wildcards, events to
one connection and presence across hosts, and a steady stream of publications from one
host to the other that a broker outage interrupts.

Interest in a fresh subscription may reach the broker servers of another host a moment
after the subscription returns (NATS routes it to the other servers of a cluster
asynchronously): what is published before is lost, so the first publication across
hosts after a subscription is repeated until it arrives (``until_heard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

from gobstopper._util import cancel_and_wait

from .helpers import WAIT, wait_until
from .rpc_peer import RpcPeer, rpc_peers
from .servers import Server, start

APP = "examples.rpc:app"

#: How long one look for a repeated publication waits before the next is sent.
REPEAT_S = 0.1
#: The pace of a ``Ticks`` stream: a publication every this many seconds.
TICK_S = 0.02


@contextlib.contextmanager
def two_hosts(
    env_a: dict[str, str], env_b: dict[str, str], app: str = APP
) -> Iterator[tuple[Server, Server]]:
    """Host A and host B (RSGI) serving ``app``, each with its own environment, stopped
    afterwards."""
    a = start(app, "rsgi", env_a)
    try:
        b = start(app, "rsgi", env_b)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


async def until_heard(
    send: Callable[[str], Awaitable[object]],
    listeners: Sequence[RpcPeer],
    method: str,
    tag: Callable[[dict[str, Any]], object],
) -> None:
    """``send`` numbered pings until every listener has had one, then ``"synced"``, which
    every listener reads up to (one sender's messages keep their order): afterwards no
    ping is left on its way, and each listener's next message is the test's."""
    deadline = time.monotonic() + WAIT
    waiting = list(listeners)
    n = 0
    while waiting:
        assert time.monotonic() < deadline, f"no ping reached {len(waiting)} listener(s)"
        await send(f"ping{n}")
        n += 1
        for peer in list(waiting):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peer.push(method), REPEAT_S)
                waiting.remove(peer)
    await send("synced")
    for peer in listeners:
        while tag(await peer.push(method)) != "synced":
            pass


def data(params: dict[str, Any]) -> object:
    """What a channel message (``rpc.message``) carries."""
    return params["data"]


def text(params: dict[str, Any]) -> object:
    """The text of a ``said`` event."""
    return params["data"]["text"]


async def rooms_channels_events_and_presence(a: Server, b: Server) -> None:
    """What a user of either host sees of the other: channel subscribers matching by
    pattern, presence asked anywhere, rooms, one connection reached by id, everyone."""
    async with rpc_peers(a, 2) as (on_a, also_a), rpc_peers(b, 2) as (on_b, also_b):
        ids = [(await x.result("rpc.info"))["id"] for x in (on_a, also_a, on_b, also_b)]
        await on_a.result("rpc.subscribe", ["news.*"])
        await on_b.result("rpc.subscribe", ["news.**"])
        await also_a.result("rpc.subscribe", ["chat.*"])
        # Presence of subscribers: a host answers for its own at once, and for the other
        # host's as soon as that one has written them (in the background).
        subscribers = {"news.*": [ids[0]], "news.**": [ids[2]], "chat.*": [ids[1]]}
        got = await on_a.result("subscribers", ["news.*"])
        assert got == subscribers["news.*"], (got, ids)
        got = await on_b.result("subscribers", ["news.**"])
        assert got == subscribers["news.**"], (got, ids)

        async def all_seen(x: RpcPeer) -> bool:
            answers = {p: await x.result("subscribers", [p]) for p in subscribers}
            return answers == subscribers

        for x in (on_a, on_b):
            await wait_until(partial(all_seen, x), what="subscribers on both hosts")

        async def from_b(payload: str) -> None:
            await also_b.result("announce", ["news.ping", payload])

        async def from_a(payload: str) -> None:
            await on_a.result("announce", ["news.ping", payload])  # on_a hears it too

        async def chat_from_b(payload: str) -> None:
            await also_b.result("announce", ["chat.ping", payload])

        await until_heard(from_b, [on_a, on_b], "rpc.message", data)
        await until_heard(from_a, [on_b, on_a], "rpc.message", data)
        await until_heard(chat_from_b, [also_a], "rpc.message", data)

        # Published on B: B's news.** subscriber counts as local, A's news.* one gets it
        # from the other host; once each.
        assert await also_b.result("announce", ["news.sport", "goal"]) == 1
        goal = {"channel": "news.sport", "data": "goal"}
        assert await on_a.push("rpc.message") == goal
        assert await on_b.push("rpc.message") == goal
        # Published on A: the other way round.
        assert await also_a.result("announce", ["news.world", "rain"]) == 1
        assert (await on_b.push("rpc.message"))["data"] == "rain"
        assert (await on_a.push("rpc.message"))["data"] == "rain"
        # Two segments deep: news.** matches, news.* does not.
        assert await also_a.result("announce", ["news.sport.live", "kickoff"]) == 0
        assert await on_b.push("rpc.message") == {"channel": "news.sport.live", "data": "kickoff"}
        # chat.* has a subscriber on A only: B's publication reaches it there.
        assert await also_b.result("announce", ["chat.x", "hello"]) == 0
        assert await also_a.push("rpc.message") == {"channel": "chat.x", "data": "hello"}

        # A room with a member on each host.
        await on_a.call("join", {"room": "r"})

        async def say_from_b(payload: str) -> None:
            await also_b.result("say", {"room": "r", "text": payload})

        await until_heard(say_from_b, [on_a], "rpc.event", text)
        await on_b.call("join", {"room": "r"})
        joined = await on_a.push("rpc.event")  # "everyone else in the room", across hosts
        assert (joined["event"], joined["data"]) == ("joined", {"id": ids[2]})

        async def say_from_a(payload: str) -> None:
            await also_a.result("say", {"room": "r", "text": payload})

        await until_heard(say_from_a, [on_b, on_a], "rpc.event", text)
        await on_b.call("say", {"room": "r", "text": "hi"})
        for x in (on_a, on_b):
            said = await x.push("rpc.event", "said")
            assert said["data"] == {"id": ids[2], "text": "hi"}

        # One connection, by id, on the other host.
        assert await on_b.result("whisper", {"to": ids[1], "text": "psst"}) is True
        assert (await also_a.push("rpc.event", "whispered"))["data"] == {
            "id": ids[2],
            "text": "psst",
        }
        # Everyone, on both hosts.
        await also_a.call("shout", {"text": "all"})
        for x in (on_a, also_a, on_b, also_b):
            shouted = await x.push("rpc.event", "shouted")
            assert shouted["data"] == {"id": ids[1], "text": "all"}

        for x in (on_a, also_a, on_b, also_b):
            await x.nothing_more()  # each got everything once, nothing else


class Ticks:
    """Numbers 0, 1, 2, ... sent by one peer every ``TICK_S`` seconds (``send(n)``) and
    read by another, with when each arrived; ``async with`` runs both sides."""

    def __init__(
        self,
        send: Callable[[int], Awaitable[object]],
        listener: RpcPeer,
        method: str,
        number: Callable[[dict[str, Any]], object],
    ) -> None:
        self._send = send
        self._listener = listener
        self._method = method
        self._number = number
        self.sent = 0  # how many were sent (each after the call returned)
        self.received: list[tuple[int, float]] = []  # (number, monotonic time)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Ticks:
        self._tasks = [asyncio.ensure_future(self._publish()), asyncio.ensure_future(self._read())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Cancelled again until they stop: a reader's wait_for may swallow one
        # cancellation (before Python 3.12) and go round its loop once more.
        await cancel_and_wait(self._tasks)

    async def _publish(self) -> None:
        while True:
            await self._send(self.sent)
            self.sent += 1
            await asyncio.sleep(TICK_S)  # the pace of the stream

    async def _read(self) -> None:
        while True:
            try:
                params = await self._listener.push(self._method)
            except TimeoutError:
                continue  # an outage: nothing comes for a while
            self.received.append((int(str(self._number(params))), time.monotonic()))

    def numbers(self) -> list[int]:
        return [n for n, _ in self.received]

    def first_after(self, sent: int) -> float | None:
        """When the first number sent after the first ``sent`` arrived, if one has."""
        return next((at for n, at in self.received if n >= sent), None)

    def flowing(self, since: int, count: int) -> bool:
        """Whether ``count`` numbers in a row, all sent after the first ``since``, have
        arrived last."""
        tail = self.numbers()[-count:]
        return (
            len(tail) == count
            and tail[0] >= since
            and tail == list(range(tail[0], tail[0] + count))
        )

    def longest_pause(self, since: float) -> float:
        """The longest time without an arrival from ``since`` to the last arrival."""
        times = [since] + [at for _, at in self.received if at > since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def assert_in_order(self) -> None:
        """Each number at most once, in the order sent."""
        numbers = self.numbers()
        assert numbers == sorted(set(numbers)), numbers
