"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over a gobstopper WebSocket.

Example::

    rpc = RPC()

    @rpc.method()
    async def add(a: int, b: int) -> int:
        return a + b

    @app.websocket("/rpc")
    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        await rpc.serve(ws)
"""

from __future__ import annotations

import inspect
import json
import logging
import types
import typing
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from ..errors import ConnectionClosed
from ..security import RateLimiter
from ..websocket import WebSocket

__all__ = [
    "ACCESS_DENIED",
    "RATE_LIMITED",
    "RPC",
    "Guard",
    "RPCError",
    "all_of",
    "any_of",
    "equals",
    "has",
]

logger = logging.getLogger("gobstopper.rpc")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
ACCESS_DENIED = -32001  # a guard said no
RATE_LIMITED = -32002  # the caller is over the method's rate limit
MAX_BATCH = 100  # requests in one batch; more is an invalid request

#: A guard: a predicate on the caller's connection state (``ws.state``).
Guard = Callable[[Any], bool]


def has(name: str) -> Guard:
    """The connection's state has ``name`` set (e.g. ``has("user")``, set by an auth hook)."""
    return lambda state: getattr(state, name, None) is not None


def equals(name: str, value: Any) -> Guard:
    """The connection's state ``name`` equals ``value`` (e.g. ``equals("role", "admin")``)."""
    return lambda state: getattr(state, name, None) == value


def all_of(*guards: Guard) -> Guard:
    """Every guard passes."""
    return lambda state: all(g(state) for g in guards)


def any_of(*guards: Guard) -> Guard:
    """At least one guard passes."""
    return lambda state: any(g(state) for g in guards)


class RPCError(Exception):
    """An error answered to the caller: raise it from a method on purpose.

    Args:
        code: a JSON-RPC error code; applications use codes outside -32768..-32000.
        message: a short description.
        data: anything JSON-able that helps the caller.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(frozen=True)
class _Method:
    fn: Callable[..., Awaitable[Any]]
    signature: inspect.Signature
    hints: dict[str, Any]
    takes_ws: bool
    requires: Guard | None
    limit: tuple[int, float] | None  # calls per period, per connection


class RPC:
    """A table of methods, and the loop that serves them on a WebSocket."""

    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}
        # Per connection and method: the rate limiter's bucket; gone with the connection.
        self._buckets: weakref.WeakKeyDictionary[WebSocket, dict[str, RateLimiter]] = (
            weakref.WeakKeyDictionary()
        )

    def method(
        self,
        name: str | None = None,
        *,
        requires: Guard | None = None,
        limit: int | None = None,
        period: float = 1.0,
    ) -> Callable[[F], F]:
        """Register an async function as a method (under its own name by default).

        Its parameters are validated from their type hints (``int``, ``float``,
        ``str``, ``bool``, ``None``, ``list``, ``dict``, ``X | None``, ``list[X]``,
        ``dict[str, X]``, ``Any``); a parameter named ``ws`` gets the connection.

        Args:
            name: the method's name (default: the function's).
            requires: a guard on the caller's ``ws.state`` (``has``, ``equals``,
                ``all_of``, ``any_of``); when it fails the caller gets ``ACCESS_DENIED``.
            limit: calls allowed per ``period`` seconds per connection; past it the
                caller gets ``RATE_LIMITED``.

        Raises:
            TypeError: the function is not async, or the name is taken.
        """

        def decorator(fn: F) -> F:
            if not inspect.iscoroutinefunction(typing.cast(Any, fn)):
                raise TypeError(f"RPC method {fn!r} must be an async function")
            key = name or fn.__name__
            if key in self._methods:
                raise TypeError(f"RPC method {key!r} is already registered")
            signature = inspect.signature(fn)
            hints = typing.get_type_hints(fn)
            hints.pop("return", None)
            rate = None if limit is None else (limit, period)
            self._methods[key] = _Method(
                fn, signature, hints, "ws" in signature.parameters, requires, rate
            )
            return fn

        return decorator

    async def serve(self, ws: WebSocket) -> None:
        """Answer requests on ``ws`` until it closes (the connection must be accepted)."""
        try:
            async for message in ws:
                if message.data is None:
                    continue
                reply = await self.handle(message.data, ws)
                if reply is not None:
                    await ws.send_text(reply)
        except ConnectionClosed:
            pass

    async def handle(self, raw: str | bytes, ws: WebSocket | None = None) -> str | None:
        """One inbound message: the JSON reply to send, or None (notifications only)."""
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            return _dumps(_error(None, RPCError(PARSE_ERROR, "Parse error")))
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                why = "empty batch" if not payload else f"over {MAX_BATCH} requests"
                return _dumps(_error(None, RPCError(INVALID_REQUEST, "Invalid Request", why)))
            replies = [r for r in [await self._one(item, ws) for item in payload] if r]
            return _dumps(replies) if replies else None
        reply = await self._one(payload, ws)
        return _dumps(reply) if reply is not None else None

    async def _one(self, request: Any, ws: WebSocket | None) -> dict[str, Any] | None:
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
            or ("params" in request and not isinstance(request["params"], (list, dict)))
            or ("id" in request and not _valid_id(request["id"]))
        ):
            rid = (
                request.get("id")
                if isinstance(request, dict) and _valid_id(request.get("id"))
                else None
            )
            return _error(rid, RPCError(INVALID_REQUEST, "Invalid Request"))
        notification = "id" not in request
        rid = request.get("id")
        try:
            method = self._methods.get(request["method"])
            if method is None:
                raise RPCError(METHOD_NOT_FOUND, "Method not found", request["method"])
            if method.requires is not None and (ws is None or not method.requires(ws.state)):
                raise RPCError(ACCESS_DENIED, "Access denied", request["method"])
            if method.limit is not None and ws is not None:
                self._take_token(ws, request["method"], method.limit)
            args, kwargs = _bind(method, request.get("params", []), ws)
            result = await method.fn(*args, **kwargs)
            json.dumps(result)  # a result that cannot be sent is the method's bug
        except RPCError as exc:
            return None if notification else _error(rid, exc)
        except ConnectionClosed:
            raise
        except Exception:
            logger.exception("RPC method %r failed", request["method"])
            return None if notification else _error(rid, RPCError(INTERNAL_ERROR, "Internal error"))
        return None if notification else {"jsonrpc": "2.0", "result": result, "id": rid}

    def _take_token(self, ws: WebSocket, name: str, limit: tuple[int, float]) -> None:
        buckets = self._buckets.setdefault(ws, {})
        bucket = buckets.get(name)
        if bucket is None:
            calls, period = limit
            bucket = buckets[name] = RateLimiter(calls / period, calls)
        if not bucket.allow():
            raise RPCError(RATE_LIMITED, "Rate limit exceeded", name)


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, (int, float)) and not isinstance(value, bool))
    )


def _bind(
    method: _Method, params: list[Any] | dict[str, Any], ws: WebSocket | None
) -> tuple[list[Any], dict[str, Any]]:
    extra = {"ws": ws} if method.takes_ws else {}
    try:
        if isinstance(params, list):
            bound = method.signature.bind(*params, **extra)
        else:
            bound = method.signature.bind(**params, **extra)
    except TypeError as exc:
        raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
    for name, value in bound.arguments.items():
        hint = method.hints.get(name)
        if hint is None or (name == "ws" and method.takes_ws):
            continue
        kind = method.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            values = list(value)  # *args: the hint is each one's
        elif kind is inspect.Parameter.VAR_KEYWORD:
            values = list(value.values())
        else:
            values = [value]
        if not all(_conforms(v, hint) for v in values):
            raise RPCError(INVALID_PARAMS, "Invalid params", f"{name}: expected {_name(hint)}")
    return list(bound.args), dict(bound.kwargs)


def _conforms(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        _key, item = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(_conforms(v, item) for v in value.values())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not know: the method checks for itself


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _error(rid: Any, exc: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.as_dict(), "id": rid}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
