"""The OpenRPC document (https://spec.open-rpc.org) of an endpoint: what ``rpc.discover``
answers and ``python -m gobstopper openrpc`` writes.

It is read from the method table: every method and stream the app registered, with the
schemas of its parameters and result made by msgspec from the type hints (the same
hints that validate the calls), and the client-to-server events under the extension
``x-gobstopper-events``. The protocol's own ``rpc.*`` methods are the client library's
API and are left out, and so are the parameters the server fills (``ws``, ``conn``, an
event handler's ``Event``).

All the schemas are made in one msgspec call, so that a type used in several places is
one entry of ``components.schemas``, which every ``$ref`` points into. A return hint
msgspec cannot describe (a class of the app's own) gives the schema ``{}`` (anything):
results are not validated, so such a hint is allowed, and the document says no more
than it knows. A missing hint is ``{}`` too.

The document's shape is written down in ``docs/openrpc.md``.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .binding import NO_DATA, Method
from .protocol import DISCOVER, METHOD_NOT_FOUND, RPCError

if TYPE_CHECKING:
    from .rpc import RPC

__all__ = ["OPENRPC_VERSION", "Discovery", "openrpc_document"]

#: The version of the OpenRPC specification the document follows.
OPENRPC_VERSION = "1.3.2"

#: Where the ``$ref`` of a schema point.
REF_TEMPLATE = "#/components/schemas/{name}"

#: The extension that marks a streaming method (its result: the schema of one item).
STREAM = "x-gobstopper-stream"
#: The extension listing the client-to-server events.
EVENTS = "x-gobstopper-events"

#: The async iterables a stream's return hint may name; their first argument is the item.
_ITERABLES = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncGenerator,
    collections.abc.AsyncIterable,
)

_EMPTY = inspect.Parameter.empty


class Discovery:
    """An endpoint's OpenRPC document, and the ``rpc.discover`` method that answers it.

    Args:
        methods: the endpoint's method table (read when the document is made: methods
            registered later are in it).
        title: ``info.title``.
        version: ``info.version`` (the app's version, not the specification's).

    Attributes:
        public: whether clients may ask for the document (``rpc.discover``); when False
            it is answered "Method not found", as if there were no such method.
    """

    def __init__(self, methods: Mapping[str, Method], title: str, version: str) -> None:
        self.methods = methods
        self.title = title
        self.version = version
        self.public = True
        self._cached: tuple[tuple[int, str, str], dict[str, Any]] | None = None

    def document(self) -> dict[str, Any]:
        """A new OpenRPC document of the methods and events registered now."""
        return openrpc_document(self.methods, title=self.title, version=self.version)

    async def answer(self, peer: object) -> dict[str, Any]:
        """``rpc.discover``: the document, made once (and again after a registration).

        Raises:
            RPCError: ``METHOD_NOT_FOUND`` when the document is not ``public``.
        """
        if not self.public:
            raise RPCError(METHOD_NOT_FOUND, "Method not found", DISCOVER)
        # Methods are never unregistered: their count says whether the table changed.
        key = (len(self.methods), self.title, self.version)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.document())
        return self._cached[1]


def openrpc_document(
    endpoint: RPC | Mapping[str, Method],
    *,
    title: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The OpenRPC document of an endpoint's methods, streams and events (a new ``dict``).

    Args:
        endpoint: an ``RPC`` (its ``title`` and ``version`` are used unless given), or
            a method table.
        title: ``info.title`` (default ``"gobstopper"``).
        version: ``info.version`` (default ``"0.0.0"``).

    Raises:
        TypeError: ``endpoint`` is neither an ``RPC`` nor a method table.
    """
    if isinstance(endpoint, Mapping):
        methods = endpoint
    else:
        discovery = getattr(endpoint, "discovery", None)
        if not isinstance(discovery, Discovery):
            raise TypeError(f"not an RPC endpoint: {endpoint!r}")
        title = discovery.title if title is None else title
        version = discovery.version if version is None else version
        methods = discovery.methods
    own = [(name, m) for name, m in methods.items() if m.kind != "builtin"]
    schemas = _Schemas()
    described = [(name, m, _describe(m, schemas)) for name, m in own]
    made, components = schemas.make()
    entries: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for name, method, (params, result) in described:
        entry: dict[str, Any] = {"name": name}
        doc = inspect.getdoc(method.fn)
        if doc:
            entry["description"] = doc
        if method.kind != "event":
            entry["paramStructure"] = _structure(method)
        entry["params"] = [_param(p, made) for p in params]
        if result is not None:
            item = method.kind == "stream"
            entry["result"] = {"name": "item" if item else "result", "schema": made[result]}
        if method.kind == "stream":
            entry[STREAM] = True
        (events if method.kind == "event" else entries).append(entry)
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "gobstopper" if title is None else title,
            "version": "0.0.0" if version is None else version,
        },
        "methods": entries,
        "components": {"schemas": components},
        EVENTS: events,
    }


class _Param(typing.NamedTuple):
    name: str
    required: bool
    schema: int  # its index among the schemas made
    default: Any


class _Schemas:
    """The types whose schemas a document needs, made in one msgspec call (each type
    once in ``components``); a type msgspec cannot describe gets ``{}``."""

    def __init__(self) -> None:
        self.types: list[Any] = []

    def add(self, hint: Any) -> int:
        self.types.append(hint)
        return len(self.types) - 1

    def make(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        types = [t if _describable(t) else Any for t in self.types]
        made, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
        return list(made), components


def _describable(hint: Any) -> bool:
    try:
        msgspec.json.schema(hint)
    except (TypeError, ValueError):
        return False
    return True


def _describe(method: Method, schemas: _Schemas) -> tuple[list[_Param], int | None]:
    """The parameters a request fills, and the result's schema (None: no result)."""
    hints = _hints(method.fn)
    params: list[_Param] = []
    if method.kind == "event":
        names = list(method.signature.parameters)[1:2]  # after the Event: its data
        if names and method.data_hint is not NO_DATA:
            # Always validated, never defaulted: dispatch passes the data, even None.
            params.append(_Param(names[0], True, schemas.add(method.data_hint), _EMPTY))
    else:
        public = method.public
        assert public is not None
        for p in public.parameters.values():
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue  # OpenRPC has no words for them
            hint = method.hints.get(p.name, Any)
            params.append(_Param(p.name, p.default is _EMPTY, schemas.add(hint), p.default))
    returns = hints.get("return", Any)
    if method.kind == "stream":
        returns = _item(returns)
    elif method.kind == "event" and returns is type(None):
        return params, None  # no acknowledgement
    return params, schemas.add(returns)


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError):  # registration resolved them; a table made otherwise
        return {}


def _item(returns: Any) -> Any:
    """A stream's item type, from ``AsyncIterator[X]`` (or ``AsyncGenerator[X, ...]``,
    ``AsyncIterable[X]``); ``Any`` from anything else."""
    origin = typing.get_origin(returns)
    args = typing.get_args(returns)
    if origin in _ITERABLES and args:
        return args[0]
    return Any


def _structure(method: Method) -> str:
    """How a request may pass the parameters: ``by-position``, ``by-name`` or ``either``."""
    public = method.public
    assert public is not None
    kinds = {p.kind for p in public.parameters.values()}
    if inspect.Parameter.POSITIONAL_ONLY in kinds:
        return "by-position"
    if inspect.Parameter.KEYWORD_ONLY in kinds:
        return "by-name"
    return "either"


def _param(param: _Param, made: list[dict[str, Any]]) -> dict[str, Any]:
    schema = _with_default(made[param.schema], param.default)
    return {"name": param.name, "required": param.required, "schema": schema}


def _with_default(schema: dict[str, Any], default: Any) -> dict[str, Any]:
    """``schema`` with the parameter's default, when it has one JSON can carry."""
    if default is _EMPTY:
        return schema
    try:
        value = msgspec.to_builtins(default)
        msgspec.json.encode(value)
    except (TypeError, ValueError):
        return schema
    return {**schema, "default": value}
