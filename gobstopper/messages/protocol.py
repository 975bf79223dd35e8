"""The message layer's wire protocol, without I/O: JSON-RPC 2.0 plus gobstopper's ``rpc.*``
methods and pushes.

Everything that speaks the protocol - the server's dispatch, the Python client, the test
clients - builds and parses messages here, so the names, codes and shapes exist once.
Nothing here is async or touches a socket; ``docs/protocol.md`` describes the same rules
for clients in other languages, and a test checks that the browser client's constants
match these.

Examples:
    ```pycon
    >>> request("add", [2, 3], 1)
    {'jsonrpc': '2.0', 'method': 'add', 'id': 1, 'params': [2, 3]}
    >>> parse_request({"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1})
    Request(method='add', params=[2, 3], id=1, notification=False)
    ```
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCESS_DENIED",
    "CANCEL",
    "CLOSING_EVENT",
    "DISCOVER",
    "EVENT",
    "HISTORY",
    "INFO",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_BATCH",
    "MESSAGE",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "PRESENCE",
    "PRESENCE_DIFF",
    "PUBLISH",
    "RATE_LIMITED",
    "REFRESH",
    "REFRESH_DUE",
    "REQUEST_CANCELLED",
    "RESERVED_PREFIX",
    "STREAM",
    "SUBSCRIBE",
    "TOO_MANY_SUBSCRIPTIONS",
    "TOO_MANY_TASKS",
    "UNAUTHORIZED",
    "UNSUBSCRIBE",
    "VERSION",
    "ErrorCode",
    "Notification",
    "RPCError",
    "Request",
    "Response",
    "channel_message",
    "check_event_name",
    "error",
    "event_push",
    "history_params",
    "invalid_request_id",
    "is_request",
    "notification",
    "parse_batch",
    "parse_incoming",
    "parse_request",
    "presence_diff",
    "read_position",
    "request",
    "result",
    "since",
    "stream_item",
    "subscribe_params",
    "valid_id",
]

VERSION = "2.0"
#: Method names starting with this are the protocol's own (the specification reserves it).
RESERVED_PREFIX = "rpc."
#: Requests in one batch; more is an invalid request.
MAX_BATCH = 100

# The built-in methods a client calls.
SUBSCRIBE = "rpc.subscribe"
UNSUBSCRIBE = "rpc.unsubscribe"
PUBLISH = "rpc.publish"
CANCEL = "rpc.cancel"
INFO = "rpc.info"
HISTORY = "rpc.history"  # a channel's kept publications (channels with history only)
PRESENCE = "rpc.presence"  # who is subscribed to a channel: users, their metas, counts
REFRESH = "rpc.refresh"  # a new credential for this connection: {"token"}
DISCOVER = "rpc.discover"  # the endpoint's OpenRPC document (docs/openrpc.md)
# The notifications the server pushes.
MESSAGE = "rpc.message"  # params: {"channel", "data"} (+ "offset", "epoch" with history)
EVENT = "rpc.event"  # params: {"event", "data", "from"}
STREAM = "rpc.stream"  # params: {"id", "item"}
#: params: {"channel", "event": "join" | "update" | "leave", "user", "metas"}
PRESENCE_DIFF = "rpc.presence_diff"
#: params: {"expires_at", "in"}: the credential expires soon; answer with ``rpc.refresh``.
REFRESH_DUE = "rpc.refresh_due"
#: The event (an ``rpc.event``, from the server) sent just before the server closes a
#: connection for a reason the client must know: data {"code", "reason"}. Under RSGI it
#: is the only way the code reaches the client.
CLOSING_EVENT = "rpc.close"


class ErrorCode(enum.IntEnum):
    """The error codes of the protocol: JSON-RPC's own, then gobstopper's."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    ACCESS_DENIED = -32001  # a guard said no
    RATE_LIMITED = -32002  # the caller is over the method's rate limit
    TOO_MANY_SUBSCRIPTIONS = -32003  # the connection holds max_subscriptions already
    TOO_MANY_TASKS = -32004  # the connection runs max_tasks streams and concurrent calls
    UNAUTHORIZED = -32005  # a refresh's credential was refused (the connection closes)
    REQUEST_CANCELLED = -32800  # the caller cancelled a stream or a concurrent call


# Plain ints too: they are what travels, and what applications compare with.
PARSE_ERROR = int(ErrorCode.PARSE_ERROR)
INVALID_REQUEST = int(ErrorCode.INVALID_REQUEST)
METHOD_NOT_FOUND = int(ErrorCode.METHOD_NOT_FOUND)
INVALID_PARAMS = int(ErrorCode.INVALID_PARAMS)
INTERNAL_ERROR = int(ErrorCode.INTERNAL_ERROR)
ACCESS_DENIED = int(ErrorCode.ACCESS_DENIED)
RATE_LIMITED = int(ErrorCode.RATE_LIMITED)
TOO_MANY_SUBSCRIPTIONS = int(ErrorCode.TOO_MANY_SUBSCRIPTIONS)
TOO_MANY_TASKS = int(ErrorCode.TOO_MANY_TASKS)
UNAUTHORIZED = int(ErrorCode.UNAUTHORIZED)
REQUEST_CANCELLED = int(ErrorCode.REQUEST_CANCELLED)


class RPCError(Exception):
    """An error answered to the caller: raise it from a method on purpose.

    Args:
        code: a JSON-RPC error code; applications use codes outside -32768..-32000.
        message: a short description.
        data: anything the encoding can carry that helps the caller.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        """The JSON-RPC error object."""
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj


# -- building ------------------------------------------------------------------------------


def request(method: str, params: list[Any] | dict[str, Any] | None, id: Any) -> dict[str, Any]:
    """A request (answered); ``params`` None leaves them out."""
    message: dict[str, Any] = {"jsonrpc": VERSION, "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict[str, Any]:
    """A notification (never answered); ``params`` None leaves them out."""
    message: dict[str, Any] = {"jsonrpc": VERSION, "method": method}
    if params is not None:
        message["params"] = params
    return message


def result(id: Any, value: Any) -> dict[str, Any]:
    """A successful answer."""
    return {"jsonrpc": VERSION, "result": value, "id": id}


def error(id: Any, exc: RPCError) -> dict[str, Any]:
    """An error answer (``id`` None when the request's id could not be read)."""
    return {"jsonrpc": VERSION, "error": exc.as_dict(), "id": id}


def channel_message(channel: str, data: Any) -> dict[str, Any]:
    """The push of a channel publication."""
    return {"jsonrpc": VERSION, "method": MESSAGE, "params": {"channel": channel, "data": data}}


def check_event_name(event: str) -> None:
    """Refuse to push an event named ``rpc.*``: those are the protocol's (``rpc.close``
    tells the client why it is closed), and an app relaying a name it was sent must not
    be able to fake one.

    Raises:
        ValueError: the name starts with ``rpc.``.
    """
    if event.startswith(RESERVED_PREFIX):
        raise ValueError(f"{event!r}: event names starting with 'rpc.' are reserved")


def event_push(event: str, data: Any, sender: str | None) -> dict[str, Any]:
    """The push of a named event (``sender``: the connection that caused it, or None)."""
    params = {"event": event, "data": data, "from": sender}
    return {"jsonrpc": VERSION, "method": EVENT, "params": params}


def presence_diff(
    channel: str, event: str, user: str, metas: list[dict[str, Any]]
) -> dict[str, Any]:
    """The push of a change in a channel's presence: ``event`` is ``join``, ``update`` or
    ``leave``; ``metas`` the user's ``{"conn", "meta"}`` after it (before it, for a
    leave)."""
    params = {"channel": channel, "event": event, "user": user, "metas": metas}
    return {"jsonrpc": VERSION, "method": PRESENCE_DIFF, "params": params}


def stream_item(id: Any, item: Any) -> dict[str, Any]:
    """One item of the stream answering request ``id``."""
    return {"jsonrpc": VERSION, "method": STREAM, "params": {"id": id, "item": item}}


# -- parsing (server side) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A valid request or notification, as the server reads it."""

    method: str
    params: list[Any] | dict[str, Any] | None
    id: Any
    notification: bool


def valid_id(value: Any) -> bool:
    """Whether ``value`` may be a request id: a string, a number or null."""
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, (int, float)) and not isinstance(value, bool))
    )


def is_request(obj: Any) -> bool:
    """Whether one decoded item is a valid JSON-RPC 2.0 request or notification (a dict
    then: read ``method``, ``params`` and ``id`` from it). ``parse_request`` without the
    allocation, for the server's hot path."""
    return (
        isinstance(obj, dict)
        and obj.get("jsonrpc") == VERSION
        and isinstance(obj.get("method"), str)
        and ("params" not in obj or isinstance(obj["params"], (list, dict)))
        and ("id" not in obj or valid_id(obj["id"]))
    )


def parse_request(obj: Any) -> Request:
    """Check one decoded request against JSON-RPC 2.0.

    Raises:
        RPCError: ``INVALID_REQUEST`` (answer it with ``invalid_request_id(obj)``).
    """
    if not is_request(obj):
        raise RPCError(INVALID_REQUEST, "Invalid Request")
    return Request(obj["method"], obj.get("params"), obj.get("id"), "id" not in obj)


def invalid_request_id(obj: Any) -> Any:
    """The id to answer an invalid request with: its own if that is valid, else None."""
    if isinstance(obj, dict) and valid_id(obj.get("id")):
        return obj.get("id")
    return None


def parse_batch(payload: Any) -> list[Any] | None:
    """The items of a batch, or None if ``payload`` is a single request.

    Raises:
        RPCError: ``INVALID_REQUEST`` for an empty batch or one over ``MAX_BATCH``.
    """
    if not isinstance(payload, list):
        return None
    if not payload:
        raise RPCError(INVALID_REQUEST, "Invalid Request", "empty batch")
    if len(payload) > MAX_BATCH:
        raise RPCError(INVALID_REQUEST, "Invalid Request", f"over {MAX_BATCH} requests")
    return payload


# -- parsing (client side) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """An answer to a request: ``error`` is set when it failed."""

    id: Any
    result: Any = None
    error: RPCError | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification the server pushed (``rpc.message``, ``rpc.event``, ``rpc.stream``)."""

    method: str
    params: Any


def parse_incoming(payload: Any) -> list[Response | Notification]:
    """What a client received: answers and notifications, in order; items that are
    neither (not objects, no method and no id) are left out."""
    found: list[Response | Notification] = []
    for item in payload if isinstance(payload, list) else (payload,):
        if not isinstance(item, dict):
            continue
        if "method" in item and "id" not in item:
            if isinstance(item["method"], str):
                found.append(Notification(item["method"], item.get("params")))
            continue
        if "id" not in item:
            continue
        if "error" in item:
            err = item["error"] if isinstance(item["error"], dict) else {}
            try:
                code = int(err.get("code", 0))
            except (TypeError, ValueError):
                code = INTERNAL_ERROR
            exc = RPCError(code, str(err.get("message", "")), err.get("data"))
            found.append(Response(item["id"], error=exc))
        else:
            found.append(Response(item["id"], result=item.get("result")))
    return found


# -- channel positions (history and recovery) ----------------------------------------------
#
# A channel that keeps history numbers its publications: ``offset`` grows by one per
# publication within an ``epoch``, a string that changes when the server's store lost
# continuity. ``rpc.message`` params then carry both; ``rpc.subscribe`` and
# ``rpc.history`` accept ``since`` (a position) and answer with the position they continue
# after and, when ``since`` was given, ``recovered``.


def since(offset: int, epoch: str) -> dict[str, Any]:
    """The ``since`` parameter of ``rpc.subscribe`` and ``rpc.history``: a position."""
    return {"offset": offset, "epoch": epoch}


def subscribe_params(channel: str, position: tuple[int, str] | None = None) -> dict[str, Any]:
    """The params of ``rpc.subscribe``, resuming after ``position`` (offset, epoch) if given."""
    params: dict[str, Any] = {"channel": channel}
    if position is not None:
        params["since"] = since(*position)
    return params


def history_params(
    channel: str, limit: int | None = None, position: tuple[int, str] | None = None
) -> dict[str, Any]:
    """The params of ``rpc.history``: at most ``limit`` publications, after ``position``."""
    params: dict[str, Any] = {"channel": channel}
    if limit is not None:
        params["limit"] = limit
    if position is not None:
        params["since"] = since(*position)
    return params


def read_position(obj: Any) -> tuple[int, str] | None:
    """The ``(offset, epoch)`` an ``rpc.message``'s params, a publication or an answer
    carries, or None when it carries none (a channel without history) or a malformed one."""
    if not isinstance(obj, dict):
        return None
    offset, epoch = obj.get("offset"), obj.get("epoch")
    if isinstance(offset, int) and not isinstance(offset, bool) and isinstance(epoch, str):
        return offset, epoch
    return None
