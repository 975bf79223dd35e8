"""Publishing from outside the servers: a process without granian or an app reaches the
clients of two granian hosts through the emitter (and ``python -m gobstopper``), on a
real redis-server and a real nats-server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gobstopper import ConfigError, Emitter, SyncEmitter

from .helpers import WAIT, wait_until
from .hosts import two_hosts
from .nats_server import NatsServer, require_nats
from .redis_server import RedisServer, require_redis
from .rpc_peer import rpc_peers
from .servers import Server, start

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.emitter:app"


@pytest.fixture(params=["redis", "nats"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real broker of each kind the emitter speaks to, on a free port."""
    if request.param == "redis":
        redis = RedisServer(require_redis())
        redis.start()
        try:
            yield redis.url
        finally:
            redis.cleanup()
    else:
        nats = NatsServer(require_nats())
        nats.start()
        try:
            yield nats.url
        finally:
            nats.cleanup()


@pytest.fixture
def hosts(broker_url: str) -> Iterator[tuple[Server, Server]]:
    env = {"GOBSTOPPER_BROKER_URL": broker_url}
    with two_hosts(env, env, APP) as both:
        yield both


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args] if not script else [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_a_process_without_granian_reaches_every_client_once(
    hosts: tuple[Server, Server], broker_url: str
) -> None:
    a, b = hosts
    async with rpc_peers(a, 1) as (on_a,), rpc_peers(b, 1) as (on_b,):
        for peer in (on_a, on_b):
            await peer.result("rpc.subscribe", ["news.*"])
            await peer.result("join", ["lobby"])
        script = textwrap.dedent(
            """
            import sys
            from gobstopper.emitter import SyncEmitter
            assert "granian" not in sys.modules and "gobstopper.app" not in sys.modules
            with SyncEmitter(sys.argv[1]) as emitter:
                emitter.publish("news.sport", {"score": [2, 1]})
                emitter.broadcast('{"jsonrpc": "2.0", "method": "note", "params": 1}', room="lobby")
                emitter.emit("ping", 7)
            assert "granian" not in sys.modules, "the emitter loaded granian"
            """
        )
        done = await asyncio.to_thread(run_python, script, broker_url)
        assert done.returncode == 0, done.stderr
        for peer in (on_a, on_b):
            message = await peer.push("rpc.message")
            assert message == {"channel": "news.sport", "data": {"score": [2, 1]}}
            assert await peer.push("note") == 1
            assert await peer.push("rpc.event") == {"event": "ping", "data": 7, "from": None}
            await peer.nothing_more()


async def test_commands_for_one_connection_on_another_host(
    hosts: tuple[Server, Server], broker_url: str
) -> None:
    _, b = hosts
    async with Emitter(broker_url) as emitter, rpc_peers(b, 1) as (on_b,):
        conn_id = await on_b.result("join", ["r"])

        async def present() -> bool:
            return conn_id in await emitter.presence() and conn_id in await emitter.presence("r")

        await wait_until(present, WAIT)
        # Subscribed by the server's side, then a publication reaches it.
        assert await emitter.subscribe(conn_id, "alerts.*")

        async def subscribed() -> bool:
            return conn_id in await emitter.subscribers("alerts.*")

        await wait_until(subscribed, WAIT)
        assert await emitter.publish("alerts.fire", "evacuate") is None  # no history here
        message = await on_b.push("rpc.message")
        assert message == {"channel": "alerts.fire", "data": "evacuate"}
        assert await emitter.send(conn_id, '{"jsonrpc": "2.0", "method": "direct", "params": 2}')
        assert await on_b.push("direct") == 2
        assert await emitter.emit("only-you", 1, to=conn_id)
        assert (await on_b.push("rpc.event"))["event"] == "only-you"

        assert await emitter.disconnect(conn_id, 4003, "banned")
        closed = await asyncio.wait_for(on_b.ws.wait_closed(), WAIT)
        assert closed is None and on_b.ws.close_code is not None

        async def gone() -> bool:
            return conn_id not in await emitter.presence()

        await wait_until(gone, WAIT)
        assert not await emitter.disconnect(conn_id)
        assert not await emitter.subscribe(conn_id, "alerts.*")
        assert not await emitter.emit("only-you", to=conn_id)


async def test_a_channel_with_history_keeps_the_emitters_publications(
    hosts: tuple[Server, Server], broker_url: str
) -> None:
    a, _ = hosts
    async with Emitter(broker_url) as emitter, rpc_peers(a, 1) as (on_a,):
        answer = await on_a.result("rpc.subscribe", {"channel": "kept.x", "since": None})
        first = await emitter.publish("kept.x", "one")
        second = await emitter.publish("kept.x", "two")
        assert first is not None and second is not None
        assert (first.offset, second.offset) == (answer["offset"] + 1, answer["offset"] + 2)
        for position, data in ((first, "one"), (second, "two")):
            message = await on_a.push("rpc.message")
            assert message["data"] == data
            assert message["offset"] == position.offset
            assert message["epoch"] == position.epoch
        kept = await on_a.result("rpc.history", {"channel": "kept.x"})
        assert [m["data"] for m in kept["publications"]][-2:] == ["one", "two"]


async def test_the_command_line_publishes_and_reads_presence(
    hosts: tuple[Server, Server], broker_url: str
) -> None:
    a, b = hosts
    async with rpc_peers(a, 1) as (on_a,), rpc_peers(b, 1) as (on_b,):
        await on_b.result("rpc.subscribe", ["news.*"])
        for peer in (on_a, on_b):
            await peer.result("join", ["lobby"])
        cli = ["-m", "gobstopper", "--broker", broker_url]
        done = await asyncio.to_thread(run_python, "", *cli, "publish", "news.x", '{"n": 1}')
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"published": True}
        assert await on_b.push("rpc.message") == {"channel": "news.x", "data": {"n": 1}}

        async def two_in_lobby() -> bool:
            done = await asyncio.to_thread(run_python, "", *cli, "presence", "lobby")
            return done.returncode == 0 and json.loads(done.stdout)["count"] == 2

        await wait_until(two_in_lobby, WAIT * 2)
        done = await asyncio.to_thread(run_python, "", *cli, "disconnect", "nobody")
        assert done.returncode == 1 and json.loads(done.stdout) == {"found": False}


def test_an_emitter_reads_the_servers_presence_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    # On NATS the first node to make the liveness bucket sets its expiry: an emitter
    # that comes first must set the servers' one.
    monkeypatch.setenv("GOBSTOPPER_PRESENCE_TTL", "x")
    with pytest.raises(ConfigError, match="GOBSTOPPER_PRESENCE_TTL='x'"):
        Emitter("nats://127.0.0.1:4222")
    monkeypatch.setenv("GOBSTOPPER_PRESENCE_TTL", "3")
    assert Emitter("nats://127.0.0.1:4222")._broker.presence_ttl == 3.0


def test_an_emitter_needs_a_shared_broker() -> None:
    for url, words in [
        ("memory://", "reaches only its own process"),
        ("", "needs a broker URL"),
        ("kafka://x", "unknown broker"),
    ]:
        with pytest.raises(ConfigError, match=words):
            Emitter(url)
        with pytest.raises(ConfigError, match=words):
            SyncEmitter(url)
    bad = run_python("", "-m", "gobstopper", "--broker", "memory://", "presence")
    assert bad.returncode == 2 and "reaches only its own process" in bad.stderr


async def test_the_emitter_example_reaches_the_feed(broker_url: str) -> None:
    from examples.emitter import announce

    feed = start(
        "examples.feed:app", "rsgi", {"GOBSTOPPER_BROKER_URL": broker_url, "FEED_TICK": "0"}
    )
    try:
        async with rpc_peers(feed, 1) as (reader,):
            await reader.result("rpc.subscribe", {"channel": "feed", "since": None})
            offset = await asyncio.to_thread(announce, "price 42", broker_url)
            message = await reader.push("rpc.message")
            assert message["data"] == {"text": "price 42"} and message["offset"] == offset
            assert await reader.push("rpc.event") == {
                "event": "announced",
                "data": {"text": "price 42"},
                "from": None,
            }
    finally:
        feed.stop()


async def test_every_connection_of_a_user_is_closed_across_hosts(
    hosts: tuple[Server, Server], broker_url: str
) -> None:
    a, b = hosts
    async with (
        Emitter(broker_url) as emitter,
        rpc_peers(a, 1, query="?user=ann") as (ann_a,),
        rpc_peers(b, 1, query="?user=ann") as (ann_b,),
        rpc_peers(b, 1, query="?user=ben") as (ben,),
    ):
        for peer in (ann_a, ann_b, ben):
            await peer.result("rpc.info")  # served: registered as its user's

        async def both_of_ann() -> bool:
            return len(await emitter.presence("user:ann")) == 2

        await wait_until(both_of_ann, WAIT)
        # Who is on, as users: ann on two hosts is one user with two connections.
        every = await emitter.users("user:ann")
        assert (every.unique_users, every.connections) == (1, 2)
        assert sorted(m.conn for m in every.users["ann"]) == sorted(
            await emitter.presence("user:ann")
        )
        with pytest.raises(ValueError, match="one of them"):
            await emitter.users()
        assert await emitter.disconnect_user("ann", 4003, "banned") == 2
        for peer in (ann_a, ann_b):
            await asyncio.wait_for(peer.ws.wait_closed(), WAIT)
        assert await ben.result("rpc.info")  # another user's connection is untouched
        assert await emitter.disconnect_user("nobody") == 0


async def test_a_message_the_servers_would_skip_is_refused_here(
    hosts: tuple[Server, Server], broker_url: str
) -> None:
    from gobstopper import MessageTooBig

    big = "x" * ((1 << 20) + 1)  # the servers' MAX_WS_MESSAGE_BYTES: 1 MiB by default
    async with Emitter(broker_url) as emitter:
        for publishing in (
            lambda: emitter.publish("kept.x", big),  # kept: it would read as a gap everywhere
            lambda: emitter.publish("news.x", big),
            lambda: emitter.broadcast(big),
            lambda: emitter.emit("big", big),
        ):
            with pytest.raises(MessageTooBig):
                await publishing()
        with pytest.raises(ValueError, match="room or to"):
            await emitter.emit("e", room="r", to="x")
        assert await emitter.publish("kept.x", "small") is not None  # the stream goes on


def test_a_sync_emitter_that_gets_no_answer_says_so_and_closes_cleanly() -> None:
    import threading

    from gobstopper import BrokerUnavailable

    from .servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(BrokerUnavailable):
        SyncEmitter(url, timeout=0.2)  # shorter than a first connection attempt
    emitter = SyncEmitter(url, timeout=5)
    with pytest.raises(BrokerUnavailable):
        emitter.presence()
    closers = [threading.Thread(target=emitter.close) for _ in range(3)]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(10)
    with pytest.raises(RuntimeError, match="closed"):
        emitter.presence()
    assert not [t for t in threading.enumerate() if t.name == "gobstopper-emitter"]
