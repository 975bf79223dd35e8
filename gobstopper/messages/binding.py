"""Parameters from type hints: what a registered method takes, and binding a request's
``params`` to it.

Registration reads a function's signature and hints once (``describe``) and fails there
- not at the first call - on a hint msgspec cannot validate. When the parameters are
plain (positional-or-keyword, defaults msgspec accepts) they become two msgspec structs,
one for named and one for positional ``params``: validating and binding a call is then
one C call, and the method is called with the struct's fields in order. Other
signatures (``*args``, ``**kwargs``, keyword-only...) go through ``inspect`` and one
``msgspec.convert`` per parameter.

Parameters named ``ws`` and ``conn`` are not read from the request: the caller's
WebSocket and ``Connection`` fill them, wherever they stand in the signature.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec
import msgspec.inspect
import msgspec.structs

from ..manager import Connection
from ..websocket import WebSocket
from .guards import Guard
from .protocol import INVALID_PARAMS, RPCError

__all__ = ["NO_DATA", "Caller", "Kind", "Method", "bind", "convert", "describe"]

#: The ``data_hint`` of an event handler that declares no data parameter.
NO_DATA: Any = object()

Kind = Literal["call", "stream", "event", "builtin"]

#: The parameters the framework fills for methods and streams.
INJECTED = ("ws", "conn")


class Caller(Protocol):
    """Who made a request: what the injected parameters are filled from."""

    @property
    def ws(self) -> WebSocket: ...

    @property
    def conn(self) -> Connection: ...


@dataclass(frozen=True)
class Method:
    """A registered method, event handler or built-in, as dispatch uses it.

    Attributes:
        fn: the function.
        kind: ``call``, ``stream`` (an async generator), ``event`` or ``builtin`` (the
            ``rpc.*`` methods, which get the caller itself as ``peer``).
        signature: the whole function's signature.
        hints: the validated parameters' types, by name.
        inject: the parameters the framework fills.
        requires: a guard on the caller's ``ws.state``.
        limit: calls per period, per connection.
        close_on_limit: close the connection when over the limit.
        concurrent: run each call as a task of its own.
        data_hint: events: the type of their data, when declared (else ``NO_DATA``).
        public: the parameters a request fills.
        structs: the fast path: the parameters as msgspec structs (named, positional)
            and their names; None when the signature has ``*args``, ``**kwargs``,
            positional-only or keyword-only parameters, or defaults msgspec refuses.
    """

    fn: Callable[..., Any]
    kind: Kind
    signature: inspect.Signature
    hints: dict[str, Any]
    inject: frozenset[str]
    requires: Guard | None = None
    limit: tuple[int, float] | None = None
    close_on_limit: bool = False
    concurrent: bool = False
    data_hint: Any = NO_DATA

    public: inspect.Signature | None = None
    structs: tuple[type[msgspec.Struct], type[msgspec.Struct], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        params = [p for n, p in self.signature.parameters.items() if n not in self.inject]
        object.__setattr__(self, "public", self.signature.replace(parameters=params))
        if self.kind == "event":
            return
        if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
            return
        fields: list[Any] = []
        for p in params:
            hint = self.hints.get(p.name, Any)
            empty = p.default is inspect.Parameter.empty
            fields.append((p.name, hint) if empty else (p.name, hint, p.default))
        try:
            named = msgspec.defstruct(
                "Params", fields, forbid_unknown_fields=True, omit_defaults=False
            )
            positional = msgspec.defstruct("Params", fields, array_like=True)
        except (TypeError, ValueError):
            return
        names = tuple(p.name for p in params)
        object.__setattr__(self, "structs", (named, positional, names))


def describe(key: str, fn: Callable[..., Any], kind: Kind, **options: Any) -> Method:
    """Read ``fn``'s parameters and hints into a ``Method`` registered as ``key``.

    An event handler takes the ``Event`` first and, optionally, its data second.

    Args:
        options: ``Method``'s ``requires``, ``limit``, ``close_on_limit``, ``concurrent``.

    Raises:
        TypeError: a hint cannot be resolved or validated, an event handler takes
            no parameter, or no request can fill the parameters (positional-only ones
            next to a required keyword-only one).
    """
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:  # a hint naming a type defined where it cannot be seen
        raise TypeError(f"{key!r}: cannot resolve its type hints: {exc}") from None
    hints.pop("return", None)
    data_hint = NO_DATA
    if kind == "event":
        names = list(signature.parameters)
        if not names:
            raise TypeError(f"event handler {fn!r} must take the Event")
        if len(names) > 1:
            data_hint = hints.get(names[1], Any)
            _check_hint(key, "data", data_hint)
        return Method(fn, kind, signature, {}, frozenset(), data_hint=data_hint, **options)
    inject = frozenset(n for n in INJECTED if n in signature.parameters)
    for n in inject:
        hints.pop(n, None)
    for param, hint in hints.items():
        _check_hint(key, param, hint)
    _check_callable(key, signature, inject)
    return Method(fn, kind, signature, hints, inject, **options)


def _check_callable(key: str, signature: inspect.Signature, inject: frozenset[str]) -> None:
    """Refuse a signature no request can fill: a positional-only parameter takes params
    by position, a keyword-only one without a default by name, and a request has one."""
    params = [p for n, p in signature.parameters.items() if n not in inject]
    by_position = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
    by_name = [
        p.name
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    if by_position and by_name:
        raise TypeError(
            f"{key!r}: no request can call it: positional-only {by_position[0]!r} is passed "
            f"by position, required keyword-only {by_name[0]!r} by name (give it a default, "
            "or make one of them positional-or-keyword)"
        )


def _check_hint(key: str, param: str, hint: Any) -> None:
    try:
        info = msgspec.inspect.type_info(hint)  # fails now, not at the first call
    except TypeError as exc:
        raise TypeError(f"{key!r}: cannot validate parameter {param!r}: {exc}") from None
    if isinstance(info, msgspec.inspect.CustomType):
        raise TypeError(
            f"{key!r}: cannot validate parameter {param!r} of type {hint!r}: use "
            "builtins, a dataclass, a TypedDict or a msgspec.Struct"
        )


def convert(name: str, value: Any, hint: Any) -> Any:
    """``value`` validated as ``hint``.

    Raises:
        RPCError: ``INVALID_PARAMS``, naming the parameter.
    """
    try:
        return msgspec.convert(value, hint)
    except msgspec.ValidationError as exc:
        raise RPCError(INVALID_PARAMS, "Invalid params", f"{name}: {exc}") from None


def bind(
    method: Method, params: list[Any] | dict[str, Any] | None, caller: Caller
) -> tuple[list[Any], dict[str, Any]]:
    """The arguments of a call of ``method`` with ``params``, for ``caller``.

    Raises:
        RPCError: ``INVALID_PARAMS``: missing, unknown or invalid parameters.
    """
    extra: dict[str, Any] = {}
    if method.kind == "builtin":
        extra["peer"] = caller
    elif method.inject:
        if "ws" in method.inject:
            extra["ws"] = caller.ws
        if "conn" in method.inject:
            extra["conn"] = caller.conn
    if method.structs is not None:
        named, positional, names = method.structs
        try:
            if isinstance(params, list):
                values = msgspec.convert(params, positional)
            else:
                values = msgspec.convert(params or {}, named)
        except msgspec.ValidationError as exc:
            raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
        if not extra:  # the struct's fields are the parameters, in order
            return list(msgspec.structs.astuple(values)), {}
        kwargs = {name: getattr(values, name) for name in names}
        kwargs.update(extra)
        return [], kwargs
    return _bind_slowly(method, params, extra)


def _bind_slowly(
    method: Method, params: list[Any] | dict[str, Any] | None, extra: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Binding through ``inspect``: signatures the structs cannot express."""
    public = method.public
    assert public is not None
    try:
        bound = public.bind(*params) if isinstance(params, list) else public.bind(**(params or {}))
    except TypeError as exc:
        raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
    arguments = bound.arguments
    for name, value in arguments.items():
        hint = method.hints.get(name)
        if hint is None:
            continue
        kind = public.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            arguments[name] = tuple(convert(name, v, hint) for v in value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            arguments[name] = {k: convert(name, v, hint) for k, v in value.items()}
        else:
            arguments[name] = convert(name, value, hint)
    if not extra:
        return list(bound.args), dict(bound.kwargs)
    # The injected parameters take their places in the whole signature.
    merged = {
        n: extra[n] if n in extra else arguments[n]
        for n in method.signature.parameters
        if n in extra or n in arguments
    }
    whole = inspect.BoundArguments(method.signature, merged)
    return list(whole.args), dict(whole.kwargs)
