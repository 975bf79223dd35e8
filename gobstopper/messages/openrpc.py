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
import math
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
    made = [_draft7(m) for m in made]
    components = {key: _draft7(value) for key, value in components.items()}
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
    hint: Any = Any


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
        by_position = _structure(method) == "by-position"
        for p in public.parameters.values():
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue  # OpenRPC has no words for them
            if by_position and p.kind is inspect.Parameter.KEYWORD_ONLY:
                continue  # a request by position cannot fill it: it keeps its default
            hint = method.hints.get(p.name, Any)
            required = p.default is _EMPTY
            params.append(_Param(p.name, required, schemas.add(hint), p.default, hint))
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
    """How a request may pass the parameters: ``by-position``, ``by-name`` or ``either``.

    A positional-only parameter can only be passed by position, a keyword-only one only
    by name: with both, ``by-position`` wins and the keyword-only ones are left out of
    the document (they keep their defaults)."""
    public = method.public
    assert public is not None
    kinds = {p.kind for p in public.parameters.values()}
    if inspect.Parameter.POSITIONAL_ONLY in kinds:
        return "by-position"
    if inspect.Parameter.KEYWORD_ONLY in kinds:
        return "by-name"
    return "either"


def _param(param: _Param, made: list[dict[str, Any]]) -> dict[str, Any]:
    schema = made[param.schema]
    if param.default is not _EMPTY:
        value = _json_default(param.default, param.hint)
        if value is not _EMPTY:
            schema = {**schema, "default": value}
    return {"name": param.name, "required": param.required, "schema": schema}


def _json_default(default: Any, hint: Any) -> Any:
    """``default`` as JSON carries it, when it is a value of its parameter's type that
    JSON can carry exactly (finite numbers); else ``_EMPTY``: a client that leaves the
    parameter out gets the server's default, while one that sent a published default
    that does not fit (``x: int = None``) would be refused."""
    try:
        if not _finite(msgspec.to_builtins(default)):  # JSON would say null
            return _EMPTY
        value = msgspec.json.decode(msgspec.json.encode(default))
        msgspec.convert(value, hint)
    except (TypeError, ValueError):  # msgspec.ValidationError is a ValueError
        return _EMPTY
    return value


def _finite(value: Any) -> bool:
    """Whether ``value`` (builtins) holds no inf or nan."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


#: The keywords of JSON Schema whose value is one schema, or a list of them, or an
#: object of them: where ``_draft7`` looks for schemas within a schema.
_ONE = ("items", "additionalItems", "additionalProperties", "not", "contains")
_LIST = ("prefixItems", "items", "anyOf", "oneOf", "allOf")
_MAP = ("properties", "patternProperties", "$defs", "definitions")


def _draft7(schema: Any) -> Any:
    """``schema`` as draft-07 (OpenRPC 1.3.2's JSON Schema) says it, where msgspec writes
    2020-12: a tuple's ``prefixItems`` + ``"items": false`` become ``items`` (a list) +
    ``"additionalItems": false``. Defaults are given their JSON form (a tuple a list),
    and left out when JSON cannot carry them (inf, nan). A new schema."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _MAP and isinstance(value, Mapping):
            out[key] = {k: _draft7(v) for k, v in value.items()}
        elif key in _LIST and isinstance(value, list):
            out[key] = [_draft7(v) for v in value]
        elif key in _ONE:
            out[key] = _draft7(value)
        elif key == "default":
            value = _json_default(value, Any)
            if value is not _EMPTY:
                out[key] = value
        else:
            out[key] = value
    if isinstance(out.get("prefixItems"), list):
        rest = out.pop("items", True)
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = rest
        # Back where msgspec puts them, for a stable document.
        out = {k: out[k] for k in schema if k in out} | {
            k: v for k, v in out.items() if k not in schema
        }
    return out
