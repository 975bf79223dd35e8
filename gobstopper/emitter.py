"""Publish into a gobstopper cluster from any process: a Django or FastAPI view, a Celery
task, a cron job. No app, no server, no granian: only the broker URL the servers use.

An emitter is a node of the cluster that has no connections: it speaks the envelope
(``envelope.py``) through the broker, as the servers do to each other, so every server
node delivers what it sends to its own connections, and it never joins presence. It can

- ``broadcast`` a WebSocket message to everyone or a room, and ``send`` one to a
  connection by id (``manager.broadcast`` / ``send_to``);
- ``publish`` to a message-layer channel and ``emit`` a named event (``rpc.publish`` /
  ``rpc.emit``): a channel that keeps history on the servers keeps this publication
  too (the servers tell the cluster which channels do: ``POLICIES``), with its position;
- ``disconnect`` a connection or every connection of a user (``disconnect_user``),
  ``subscribe`` or ``unsubscribe`` one to a channel, and read ``presence``
  (``manager.disconnect``, ``rpc.subscribe_connection``, ...).

``Emitter`` is the asyncio form; ``SyncEmitter`` the same for code without an event
loop (it runs one in a thread of its own). With ``memory://`` there is nothing to reach
(each server process has its own rooms): that is a ``ConfigError``.

Examples:
    ```python
    with SyncEmitter("redis://127.0.0.1:6379/0") as emitter:
        emitter.publish("orders.42", {"status": "shipped"})
    ```
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from . import envelope
from .brokers import Broker, broker_from_url, check_broker_url
from .cluster import ALL, CONNS, room_channel
from .commands import CONTROL, LIMITS, USER_ROOM, control_command
from .envelope import Envelope
from .errors import BrokerUnavailable, ConfigError, MessageTooBig
from .history.base import Position
from .messages import channels, protocol
from .messages.codec import json_bytes
from .messages.history import POLICIES, POSITION_ROOM, history_stream, parse_policies
from .messages.pushes import CHANNEL_ROOM, SUBSCRIBERS_ROOM
from .presence import PresenceState, member_id, state_of
from .settings import SETTINGS

__all__ = ["Emitter", "SyncEmitter"]

T = TypeVar("T")

_VAR = "GOBSTOPPER_BROKER_URL"
# How long the channels' history policies and the servers' limits read from the cluster
# are trusted.
_POLICIES_FOR_S = 5.0


def _url(url: str | None) -> str:
    url = url if url is not None else os.environ.get(_VAR, "")
    if not url:
        raise ConfigError(f"an emitter needs a broker URL: pass one, or set {_VAR}")
    check_broker_url(url)
    if url.startswith("memory:"):
        raise ConfigError(
            f"{_VAR}={url!r}: the memory broker reaches only its own process; an emitter "
            "needs the servers' shared broker (redis://, redis+cluster:// or nats://)"
        )
    return url


class Emitter:
    """Publish into a cluster through its broker, from any asyncio code.

    Args:
        url: the servers' broker URL (default: ``GOBSTOPPER_BROKER_URL``).
        prefix: the servers' broker prefix (the default unless they changed it).
        endpoint: the message layer endpoint (``RPC(name=...)``) commands go to.

    Raises:
        ConfigError: no URL, a malformed one, or ``memory://``.

    Examples:
        ```python
        async with Emitter("nats://127.0.0.1:4222") as emitter:
            await emitter.emit("deploy", {"version": "1.4"})
        ```
    """

    def __init__(
        self, url: str | None = None, *, prefix: str = "gobstopper:", endpoint: str = "rpc"
    ) -> None:
        self.url = _url(url)
        self.endpoint = endpoint
        # The servers' presence TTL: on NATS, the first node to make the liveness bucket
        # sets its expiry, and an emitter may be that node.
        ttl = SETTINGS["presence_ttl"]
        raw = os.environ.get(ttl.env)
        presence_ttl = ttl.default if raw is None else ttl.parse(ttl.env, raw)
        self._broker: Broker = broker_from_url(self.url, prefix=prefix, presence_ttl=presence_ttl)
        self._started = False
        self._policies: dict[str, tuple[float, list[tuple[str, int, float]]]] = {}
        self._limits: int | None = None
        self._limits_at = float("-inf")

    async def start(self) -> None:
        """Connect to the broker (an unreachable one is retried in the background:
        commands raise ``BrokerUnavailable`` meanwhile)."""
        if not self._started:
            await self._broker.start(lambda channel, data: None)
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._broker.stop()

    async def __aenter__(self) -> Emitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the manager's commands ---------------------------------------------------------------

    async def broadcast(
        self, data: str | bytes, *, room: str | None = None, exclude: Iterable[str] = ()
    ) -> None:
        """A WebSocket message (text, or bytes: a binary message) to every connection, or
        to a room's members, on every server node, but ``exclude`` (ids).

        Raises:
            BrokerUnavailable: the broker cannot take it; nobody got it.
        """
        note = self._envelope(data, room=room, exclude=exclude)
        await self._checked(note.payload)
        await self._publish(ALL if room is None else room_channel(room), note)

    async def send(self, conn_id: str, data: str | bytes) -> bool:
        """A WebSocket message to one connection by id; False if no node has it."""
        node = await self._node_of(conn_id)
        if node is None:
            return False
        note = self._envelope(data, target=conn_id)
        await self._checked(note.payload)
        await self._publish("node:" + node, note)
        return True

    async def disconnect(self, conn_id: str, code: int = 1000, reason: str = "") -> bool:
        """Close one connection by id (``code``: 1000 or 3000-4999); False if no node has it.

        Raises:
            ValueError: a code an application may not send, or a reason over 123 bytes.
        """
        command = control_command(code, reason)
        node = await self._node_of(conn_id)
        if node is None:
            return False
        note = Envelope(self._origin, command, topic=CONTROL, target=conn_id)
        await self._publish("node:" + node, note)
        return True

    async def disconnect_user(self, user: str, code: int = 1000, reason: str = "") -> int:
        """Close every connection of ``user`` (``connect(..., user=...)``), on every node.

        Returns:
            How many connections the user had, cluster-wide, when asked.

        Raises:
            ValueError: as ``disconnect``.
        """
        command = control_command(code, reason)
        room = USER_ROOM + user
        found = await self._broker.presence(room_channel(room))
        if found:
            note = Envelope(self._origin, command, topic=CONTROL, room=room)
            await self._publish(room_channel(room), note)
        return len(found)

    async def presence(self, room: str | None = None) -> list[str]:
        """Ids of a room's members (every connection when None), on every node."""
        key = CONNS if room is None else room_channel(room)
        return sorted({member_id(found) for found in await self._broker.presence(key)})

    # -- the message layer's commands ------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        exclude: Iterable[str] = (),
        endpoint: str | None = None,
    ) -> Position | None:
        """``data`` (anything JSON can carry) to every subscriber of ``channel``, as
        ``rpc.publish`` on a server would. A channel that keeps history on the servers
        keeps it too: its position is returned (None for a channel without history).

        Raises:
            ValueError: not a channel name (a pattern, an empty segment).
            TypeError: ``data`` JSON cannot carry.
            MessageTooBig: over the smallest ``MAX_WS_MESSAGE_BYTES`` of the servers.
            BrokerUnavailable: not published (nor kept).
        """
        if not channels.valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        topic = self._topic(endpoint)
        policy = await self._policy(topic, channel)
        # A kept publication that the servers would skip as too big would read to every
        # subscriber as a gap: refused here, as a server refuses its own.
        spare = POSITION_ROOM if policy is not None else 0
        raw = await self._checked(json_bytes(protocol.channel_message(channel, data)), spare)
        route = "chan:" + channel if self._broker.wildcards else room_channel(SUBSCRIBERS_ROOM)
        note = Envelope(
            self._origin,
            raw,
            topic=topic,
            room=SUBSCRIBERS_ROOM,
            channel=channel,
            exclude=tuple(sorted(exclude)),
        )
        if policy is None:
            await self._publish(route, note)
            return None
        size, ttl = policy
        head = envelope.encode_open(note)
        position = await self._broker.publish_with_history(
            route, head, history_stream(topic, channel), raw, size, ttl, wait=True
        )
        assert position is not None  # waited for
        return position

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        to: str | None = None,
        exclude: Iterable[str] = (),
        endpoint: str | None = None,
    ) -> bool:
        """The named event to one connection (``to``), a room's members or everyone, as
        ``rpc.emit`` would; False when ``to`` is on no node.

        Raises:
            ValueError: both ``room`` and ``to``, or an event named ``rpc.*``.
        """
        protocol.check_event_name(event)
        if room is not None and to is not None:
            raise ValueError("pass room or to, not both")
        raw = await self._checked(json_bytes(protocol.event_push(event, data, None)))
        note = Envelope(
            self._origin,
            raw,
            topic=self._topic(endpoint),
            room=room,
            target=to,
            exclude=tuple(sorted(exclude)),
        )
        if to is not None:
            node = await self._node_of(to)
            if node is None:
                return False
            await self._publish("node:" + node, note)
            return True
        await self._publish(ALL if room is None else room_channel(room), note)
        return True

    async def subscribe(self, conn_id: str, channel: str, *, endpoint: str | None = None) -> bool:
        """Subscribe a connection to ``channel`` (a name or pattern) on the server's side
        (``rpc.subscribe_connection``); False if no node has the connection."""
        return await self._control(conn_id, "subscribe", channel, endpoint)

    async def unsubscribe(self, conn_id: str, channel: str, *, endpoint: str | None = None) -> bool:
        """Undo ``subscribe`` (or the client's own subscription)."""
        return await self._control(conn_id, "unsubscribe", channel, endpoint)

    async def subscribers(self, channel: str) -> list[str]:
        """Ids of the connections subscribed to ``channel`` (that exact name or pattern)."""
        found = await self._broker.presence(room_channel(CHANNEL_ROOM + channel))
        return sorted({member_id(entry) for entry in found})

    async def users(self, room: str | None = None, *, channel: str | None = None) -> PresenceState:
        """Who is in ``room``, or subscribes to ``channel`` (one of them), on every node: the
        users with the metas of their connections, and the count of connections (see
        ``WebSocketManager.presence``).

        Example: ``len((await emitter.users(channel="chat.lobby")).users)``

        Raises:
            ValueError: neither or both of ``room`` and ``channel``.
            BrokerUnavailable: the broker cannot be asked now.
        """
        if (room is None) == (channel is None):
            raise ValueError("users() takes a room or a channel (one of them)")
        name = CHANNEL_ROOM + channel if channel is not None else room or ""
        return state_of(await self._broker.presence(room_channel(name)))

    # -- inside -----------------------------------------------------------------------------------

    @property
    def _origin(self) -> str:
        if not self._started:
            raise BrokerUnavailable(self.url, "the emitter is not started")
        return self._broker.node_id

    def _topic(self, endpoint: str | None) -> str:
        return "messages:" + (endpoint or self.endpoint)

    def _envelope(
        self,
        data: str | bytes,
        *,
        room: str | None = None,
        target: str | None = None,
        exclude: Iterable[str] = (),
    ) -> Envelope:
        binary = not isinstance(data, str)
        body = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        return Envelope(
            self._origin,
            body,
            binary=binary,
            room=room,
            target=target,
            exclude=tuple(sorted(exclude)),
        )

    async def _publish(self, channel: str, note: Envelope) -> None:
        await self._broker.publish(channel, envelope.encode(note))

    async def _node_of(self, conn_id: str) -> str | None:
        self._origin  # noqa: B018 - refuses before any lookup when not started
        return await self._broker.presence_of(CONNS, conn_id)

    async def _control(self, conn_id: str, op: str, channel: str, endpoint: str | None) -> bool:
        if not channels.valid_pattern(channel):
            raise ValueError(f"not a channel name or pattern: {channel!r}")
        node = await self._node_of(conn_id)
        if node is None:
            return False
        command = json_bytes({"op": op, "channel": channel})
        topic = self._topic(endpoint) + " control"
        await self._publish(
            "node:" + node, Envelope(self._origin, command, topic=topic, target=conn_id)
        )
        return True

    async def _checked(self, payload: bytes, spare: int = 0) -> bytes:
        """``payload``, if every server takes messages of its size (and ``spare`` more:
        a position); the servers' limits are read from the cluster, as the policies."""
        limit = await self._limit()
        if limit is not None and len(payload) + spare > limit:
            raise MessageTooBig(len(payload) + spare, limit)
        return payload

    async def _limit(self) -> int | None:
        """The smallest ``MAX_WS_MESSAGE_BYTES`` of the servers (None: none runs)."""
        now = time.monotonic()
        if now - self._limits_at > _POLICIES_FOR_S:
            limits = [
                int(entry.rsplit(" ", 1)[1])
                for entry in await self._broker.presence(LIMITS)
                if entry.split(" ")[1:2] == ["max_message_bytes"]
            ]
            self._limits = min(limits, default=None)
            self._limits_at = now
        return self._limits

    async def _policy(self, topic: str, channel: str) -> tuple[int, float] | None:
        """How ``channel`` keeps history on the servers (the first of their patterns that
        matches it decides, as there), read from the cluster at most every few seconds."""
        now = time.monotonic()
        read_at, policies = self._policies.get(topic, (float("-inf"), []))
        if now - read_at > _POLICIES_FOR_S:
            policies = parse_policies(await self._broker.presence(POLICIES + topic))
            self._policies[topic] = (now, policies)
        for pattern, size, ttl in policies:
            if pattern == channel or (
                channels.is_pattern(pattern) and channels.matches(pattern, channel)
            ):
                return size, ttl
        return None


class SyncEmitter:
    """``Emitter`` for code without an event loop (a Django view, a Celery task): each
    method blocks until done, at most ``timeout`` seconds (then ``BrokerUnavailable``,
    the command abandoned). Safe to share between threads; ``close()`` once done.

    Examples:
        ```python
        emitter = SyncEmitter()  # GOBSTOPPER_BROKER_URL
        emitter.broadcast("maintenance at 22:00")
        emitter.close()
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "gobstopper:",
        endpoint: str = "rpc",
        timeout: float = 10.0,
    ) -> None:
        self._emitter = Emitter(url, prefix=prefix, endpoint=endpoint)
        self.timeout = timeout
        self._closing = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="gobstopper-emitter", daemon=True
        )
        self._thread.start()
        try:
            # Never fails for an unreachable broker (it is retried in the background),
            # but a timeout shorter than the first attempt must not leave a thread.
            self._run(self._emitter.start())
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the emitter is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # abandoned, not left to happen later
            raise BrokerUnavailable(
                self._emitter.url, f"no answer within {self.timeout}s"
            ) from None

    def close(self) -> None:
        """Disconnect and stop the thread. Idempotent; a second caller waits for the
        first."""
        with self._closing:
            if self._closed:
                return
            try:
                stop = asyncio.run_coroutine_threadsafe(self._emitter.stop(), self._loop)
                stop.result(self.timeout)
            except (concurrent.futures.TimeoutError, BrokerUnavailable):
                pass  # the broker hung: the thread goes anyway
            finally:
                self._closed = True
                # What the broker left running (a stop that timed out mid-connection)
                # is cancelled and let finish: a task left pending in a closed loop
                # fails later, wherever the garbage collector happens to free it.
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result(
                        self.timeout
                    )
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(self.timeout)
                if not self._thread.is_alive():
                    self._loop.close()

    def __enter__(self) -> SyncEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def broadcast(
        self, data: str | bytes, *, room: str | None = None, exclude: Iterable[str] = ()
    ) -> None:
        """See ``Emitter.broadcast``."""
        self._run(self._emitter.broadcast(data, room=room, exclude=exclude))

    def send(self, conn_id: str, data: str | bytes) -> bool:
        """See ``Emitter.send``."""
        return self._run(self._emitter.send(conn_id, data))

    def publish(
        self, channel: str, data: Any, *, exclude: Iterable[str] = (), endpoint: str | None = None
    ) -> Position | None:
        """See ``Emitter.publish``."""
        return self._run(self._emitter.publish(channel, data, exclude=exclude, endpoint=endpoint))

    def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        to: str | None = None,
        exclude: Iterable[str] = (),
        endpoint: str | None = None,
    ) -> bool:
        """See ``Emitter.emit``."""
        coro = self._emitter.emit(event, data, room=room, to=to, exclude=exclude, endpoint=endpoint)
        return self._run(coro)

    def disconnect(self, conn_id: str, code: int = 1000, reason: str = "") -> bool:
        """See ``Emitter.disconnect``."""
        return self._run(self._emitter.disconnect(conn_id, code, reason))

    def subscribe(self, conn_id: str, channel: str, *, endpoint: str | None = None) -> bool:
        """See ``Emitter.subscribe``."""
        return self._run(self._emitter.subscribe(conn_id, channel, endpoint=endpoint))

    def unsubscribe(self, conn_id: str, channel: str, *, endpoint: str | None = None) -> bool:
        """See ``Emitter.unsubscribe``."""
        return self._run(self._emitter.unsubscribe(conn_id, channel, endpoint=endpoint))

    def disconnect_user(self, user: str, code: int = 1000, reason: str = "") -> int:
        """See ``Emitter.disconnect_user``."""
        return self._run(self._emitter.disconnect_user(user, code, reason))

    def presence(self, room: str | None = None) -> list[str]:
        """See ``Emitter.presence``."""
        return self._run(self._emitter.presence(room))

    def subscribers(self, channel: str) -> list[str]:
        """See ``Emitter.subscribers``."""
        return self._run(self._emitter.subscribers(channel))

    def users(self, room: str | None = None, *, channel: str | None = None) -> PresenceState:
        """See ``Emitter.users``."""
        return self._run(self._emitter.users(room, channel=channel))


async def _cancel_others(grace: float = 1.0) -> None:
    """Cancel every other task of the running loop and wait (at most ``grace`` seconds)
    for them to end."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=grace)
