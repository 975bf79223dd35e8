"""The HTTP API: publish to clients and manage their connections from any process.

When ``GOBSTOPPER_API_KEY`` is set, the app serves ``POST <GOBSTOPPER_API_PATH>``: a
JSON command object, or a list of them (a batch), such as
``{"command": "publish", "channel": "news", "data": {...}}``. Each command is a call of
the manager (``broadcast``, ``send_to``, ``disconnect``, ``cluster_members``) or of a
message-layer endpoint (``publish``, ``emit``, ``subscribe_connection``, ``history``...),
each of which already works across the cluster through the broker: a command has the
same effect whichever worker or host receives it, and the API holds no state of its own.
Endpoints are found by name in ``manager.endpoints``, where each ``RPC`` puts itself.

A request goes through, in order: the key (``hmac.compare_digest``, so the time taken
says nothing about it), the body size (a declared length is refused before reading,
else reading stops at the limit), JSON, then each command. A command is checked by
name first, so that an unknown one is called so, then converted by msgspec into the
command's struct, whose unknown fields are refused: a typo in a field name is an error,
not an ignored option. Errors are ``HTTPError(status, message)`` inside, and answered
``{"error": {"code": status, "message": ...}}``: as the response for one command, in
its place in a batch (whose response is then still 200). A batch runs its commands one
after another, so that its publications go out in its order.

Nothing unexpected reaches the client: such an exception is logged with its
traceback and answered 500 with no detail. The full reference is docs/http-api.md.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec

from .errors import BrokerUnavailable, HTTPError, MessageTooBig
from .http import JSONResponse, Request, Response
from .manager import WebSocketManager
from .messages import channels

if TYPE_CHECKING:
    from .datastructures import Headers
    from .delivery import Delivery
    from .messages.rpc import RPC

__all__ = ["COMMANDS", "HTTPAPI"]

logger = logging.getLogger("gobstopper.api")


# -- the commands ------------------------------------------------------------------------


class _Command(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    command: str


class _Binary(msgspec.Struct, forbid_unknown_fields=True):
    """``{"bytes": "<base64>"}``: a binary WebSocket message."""

    content: bytes = msgspec.field(name="bytes")


#: A raw WebSocket message: a string is a text message.
_Frame = str | _Binary
_Ids = list[str]
_CloseCode = Annotated[int, msgspec.Meta(ge=1000, le=4999)]


class _Since(msgspec.Struct, forbid_unknown_fields=True):
    offset: Annotated[int, msgspec.Meta(ge=0)]
    epoch: str


class Publish(_Command):
    channel: str
    data: Any
    endpoint: str = "rpc"
    exclude: _Ids = []


class Broadcast(_Command):
    data: _Frame
    room: str | None = None
    exclude: _Ids = []


class Send(_Command):
    id: str
    data: _Frame


class Emit(_Command):
    event: str
    data: Any = None
    room: str | None = None
    to: str | None = None
    exclude: _Ids = []
    endpoint: str = "rpc"


class Disconnect(_Command):
    id: str
    code: _CloseCode = 1000
    reason: str = ""


class DisconnectUser(_Command):
    user: str
    code: _CloseCode = 1000
    reason: str = ""


class Subscription(_Command):
    id: str
    channel: str
    endpoint: str = "rpc"


class Presence(_Command):
    room: str | None = None
    channel: str | None = None
    endpoint: str = "rpc"


class HistoryQuery(_Command):
    channel: str
    since: _Since | None = None
    limit: Annotated[int, msgspec.Meta(ge=0)] | None = None
    endpoint: str = "rpc"


class Stats(_Command):
    pass


C = TypeVar("C", bound=_Command)
Runner = Callable[["HTTPAPI", Any], Awaitable[dict[str, Any]]]

#: Every command by name: its struct (the fields it takes) and what runs it.
COMMANDS: dict[str, tuple[type[_Command], Runner]] = {}


def _command(
    name: str, struct: type[C]
) -> Callable[[Callable[[HTTPAPI, C], Awaitable[dict[str, Any]]]], Runner]:
    def register(fn: Callable[[HTTPAPI, C], Awaitable[dict[str, Any]]]) -> Runner:
        COMMANDS[name] = (struct, fn)
        return fn

    return register


def _frame(data: _Frame) -> str | bytes:
    return data.content if isinstance(data, _Binary) else data


def _delivered(delivery: Delivery) -> dict[str, Any]:
    answer: dict[str, Any] = {"delivered": int(delivery), "published": delivery.published}
    if delivery.error is not None:
        # This node's clients got it, the others' did not: say why, rather than answer
        # 503 and invite a retry that would deliver it twice here.
        answer["error"] = delivery.error
    return answer


@_command("publish", Publish)
async def _publish(api: HTTPAPI, c: Publish) -> dict[str, Any]:
    rpc = api.endpoint(c.endpoint)
    return _delivered(await rpc.publish(c.channel, c.data, exclude=c.exclude))


@_command("broadcast", Broadcast)
async def _broadcast(api: HTTPAPI, c: Broadcast) -> dict[str, Any]:
    delivery = await api.manager.broadcast(_frame(c.data), room=c.room, exclude=c.exclude)
    return _delivered(delivery)


@_command("send", Send)
async def _send(api: HTTPAPI, c: Send) -> dict[str, Any]:
    return {"sent": await api.manager.send_to(c.id, _frame(c.data))}


@_command("emit", Emit)
async def _emit(api: HTTPAPI, c: Emit) -> dict[str, Any]:
    rpc = api.endpoint(c.endpoint)
    return _delivered(await rpc.emit(c.event, c.data, room=c.room, to=c.to, exclude=c.exclude))


@_command("disconnect", Disconnect)
async def _disconnect(api: HTTPAPI, c: Disconnect) -> dict[str, Any]:
    return {"found": await api.manager.disconnect(c.id, c.code, c.reason)}


@_command("disconnect_user", DisconnectUser)
async def _disconnect_user(api: HTTPAPI, c: DisconnectUser) -> dict[str, Any]:
    delivery = await api.manager.disconnect_user(c.user, c.code, c.reason)
    answer: dict[str, Any] = {"closed": int(delivery), "published": delivery.published}
    if delivery.error is not None:
        answer["error"] = delivery.error  # this server's were closed; the others' were not
    return answer


@_command("subscribe", Subscription)
async def _subscribe(api: HTTPAPI, c: Subscription) -> dict[str, Any]:
    return {"found": await api.endpoint(c.endpoint).subscribe_connection(c.id, c.channel)}


@_command("unsubscribe", Subscription)
async def _unsubscribe(api: HTTPAPI, c: Subscription) -> dict[str, Any]:
    return {"found": await api.endpoint(c.endpoint).unsubscribe_connection(c.id, c.channel)}


@_command("presence", Presence)
async def _presence(api: HTTPAPI, c: Presence) -> dict[str, Any]:
    if (c.room is None) == (c.channel is None):
        raise HTTPError(400, "presence takes a room or a channel (one of them)")
    if c.channel is not None:
        endpoint = api.endpoint(c.endpoint)
        members = await endpoint.subscribers(c.channel)
        # A pattern's subscribers are members, but no channel's presence: no users.
        valid = channels.valid_channel(c.channel)
        state = await endpoint.presence(c.channel) if valid else None
    else:
        assert c.room is not None
        members = await api.manager.cluster_members(c.room)
        state = await api.manager.presence(c.room)
    users = {} if state is None else state.as_dict()["users"]
    return {
        "members": sorted(members),
        "count": len(members),
        "users": users,
        "unique_users": len(users),
    }


@_command("history", HistoryQuery)
async def _history(api: HTTPAPI, c: HistoryQuery) -> dict[str, Any]:
    from .history.base import Position
    from .messages.history import parse_since
    from .messages.protocol import RPCError

    since: Position | None = None
    if c.since is not None:
        try:  # the checks a client's rpc.history gets
            since = parse_since({"offset": c.since.offset, "epoch": c.since.epoch})
        except RPCError:
            raise HTTPError(400, "since.epoch is not an epoch this server gave") from None
    history = await api.endpoint(c.endpoint).history(c.channel, since=since, limit=c.limit)
    return history.as_dict()


@_command("stats", Stats)
async def _stats(api: HTTPAPI, c: Stats) -> dict[str, Any]:
    manager = api.manager
    stats = manager.stats
    health = manager.broker_health()
    return {
        "node": manager.cluster.node or None,
        "connections": len(manager),
        "rooms": len(manager.rooms()),
        "queued_bytes": manager.queued_bytes,
        "queued_messages": manager.queued_messages,
        "delivered_messages": stats.sent,
        "delivered_bytes": stats.sent_bytes,
        "dropped_messages": stats.dropped,
        "slow_consumers_closed": stats.slow_closed,
        "broker": None if health is None else health.as_dict(),
    }


# -- the endpoint ------------------------------------------------------------------------


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message}}


class HTTPAPI:
    """The HTTP API of an app: ``POST`` a command, or a list of them, with the key.

    The app builds it, and serves it at ``GOBSTOPPER_API_PATH``, when
    ``GOBSTOPPER_API_KEY`` is set (``app.api``; None otherwise). The commands and their
    answers are in docs/http-api.md.

    Args:
        manager: the manager whose connections, rooms and endpoints the commands reach.
        key: the key clients give (``Authorization: Bearer <key>`` or ``X-API-Key``).
        max_bytes: the largest request body read (larger ones get 413).

    Examples:
        In the process itself, without HTTP:

        ```python
        answer = await app.api.execute({"command": "presence", "room": "lobby"})
        ```
    """

    def __init__(self, manager: WebSocketManager, key: str, max_bytes: int) -> None:
        self.manager = manager
        self._key = key.encode()
        self.max_bytes = max_bytes

    def endpoint(self, name: str) -> RPC:
        """The message-layer endpoint called ``name``.

        Raises:
            HTTPError: 400, there is none.
        """
        rpc: RPC | None = self.manager.endpoints.get(name)
        if rpc is None:
            known = ", ".join(sorted(self.manager.endpoints)) or "none"
            raise HTTPError(400, f"no endpoint named {name!r} (endpoints: {known})")
        return rpc

    def authorised(self, headers: Headers) -> bool:
        """Whether ``headers`` carry the key."""
        given = headers.get("x-api-key") or None  # empty: look at Authorization
        if given is None:
            scheme, _, token = (headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            given = token.strip()
        # Bytes: compare_digest refuses str with characters beyond ASCII.
        return hmac.compare_digest(given.encode(), self._key)

    async def handle(self, request: Request) -> Response:
        """Answer one request (the route the app registers)."""
        if not self.authorised(request.headers):
            body = _error(401, "a valid API key is required")
            return JSONResponse(body, 401, {"www-authenticate": "Bearer"})
        try:
            raw = await request.body(self.max_bytes)
            try:
                commands = msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                raise HTTPError(400, f"the body is not valid JSON: {exc}") from None
            except RecursionError:  # nested deeper than the decoder goes
                raise HTTPError(400, "the body is not valid JSON: nested too deep") from None
            if not isinstance(commands, list):
                return JSONResponse(await self._checked(commands))
            if not commands:
                raise HTTPError(400, "a batch needs at least one command")
        except HTTPError as exc:
            return JSONResponse(_error(exc.status, exc.detail), exc.status)
        return JSONResponse([await self._answer(c) for c in commands])

    async def _answer(self, command: object) -> dict[str, Any]:
        """The answer to one command of a batch: an error object in its place if it failed."""
        try:
            return await self._checked(command)
        except HTTPError as exc:
            return _error(exc.status, exc.detail)

    async def _checked(self, command: object) -> dict[str, Any]:
        """``execute``, with an unexpected failure logged and turned into a bare 500."""
        try:
            return await self.execute(command)
        except HTTPError:
            raise
        except Exception:
            logger.exception("API command %s failed", _name(command))
            raise HTTPError(500, "internal error") from None

    async def execute(self, command: object) -> dict[str, Any]:
        """Run one command (a decoded JSON object) and return its answer.

        Raises:
            HTTPError: the command is malformed or unknown, names what is not there, or
                cannot be carried out: 400, or 503 when the broker is unavailable.
        """
        if not isinstance(command, dict):
            raise HTTPError(400, "a command is a JSON object")
        name = command.get("command")
        if not isinstance(name, str):
            raise HTTPError(400, 'a command needs a "command" field naming it')
        found = COMMANDS.get(name)
        if found is None:
            raise HTTPError(400, f"unknown command {name!r} (commands: {', '.join(COMMANDS)})")
        struct, run = found
        try:
            parsed = msgspec.convert(command, struct)
        except msgspec.ValidationError as exc:
            raise HTTPError(400, f"{name}: {exc}") from None
        try:
            return await run(self, parsed)
        except (ValueError, MessageTooBig) as exc:
            # What the manager and the endpoints refuse: a bad channel name, a close code
            # an application may not send, a channel without history, too big a message.
            raise HTTPError(400, f"{name}: {exc}") from None
        except BrokerUnavailable as exc:
            logger.warning("API command %s: %s", name, exc)
            raise HTTPError(503, f"{name}: the broker is unavailable") from None


def _name(command: object) -> str:
    name = command.get("command") if isinstance(command, dict) else None
    return repr(name) if isinstance(name, str) else "?"
