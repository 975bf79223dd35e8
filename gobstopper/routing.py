"""Path patterns, compiled once at registration, and the route table.

Patterns look like ``/ws/chat/<room>``, ``/users/<int:id>`` or ``/files/<path:rest>``.
Starlette's spelling, ``{room}`` and ``{id:int}`` (converter after the name), is taken
too and means the same. A malformed pattern, an unknown converter, a handler that cannot
take the path parameters, or the same route registered twice raises :class:`RouteError`
at once.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import RouteError

__all__ = ["CONVERTERS", "Converter", "Match", "Route", "Router", "compile_path"]


@dataclass(frozen=True, slots=True)
class Converter:
    """How one kind of path parameter is matched and converted."""

    regex: str
    convert: Callable[[str], Any]


CONVERTERS: dict[str, Converter] = {
    "str": Converter(r"[^/]+", str),
    "int": Converter(r"[0-9]+", int),
    "float": Converter(r"[0-9]+(?:\.[0-9]+)?", float),
    "uuid": Converter(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", uuid.UUID),
    "path": Converter(r".*", str),
}

# ``<converter:name>`` (ours) or ``{name:converter}`` (Starlette's), either one.
_PARAM = re.compile(r"<([^<>{}]*)>|\{([^<>{}]*)\}")


@dataclass(frozen=True, slots=True)
class CompiledPath:
    pattern: str
    regex: re.Pattern[str] | None  # None for a static path
    converters: dict[str, Callable[[str], Any]]
    # The pattern with every parameter replaced by its converter name: two routes
    # whose shapes are equal match the same paths, which is what "duplicate" means.
    shape: str


def compile_path(pattern: str) -> CompiledPath:
    """Compile a route pattern.

    Raises:
        RouteError: the pattern does not start with ``/``, has an unbalanced ``<``/``>``
            (or ``{``/``}``), an empty or invalid parameter name, an unknown converter,
            or a name used twice.
    """
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise RouteError(f"route {pattern!r} must be a string starting with '/'")
    regex_parts: list[str] = []
    shape_parts: list[str] = []
    converters: dict[str, Callable[[str], Any]] = {}
    pos = 0
    for m in _PARAM.finditer(pattern):
        literal = pattern[pos : m.start()]
        _check_literal(pattern, literal)
        regex_parts.append(re.escape(literal))
        shape_parts.append(literal)
        if m.group(1) is not None:
            conv_name, _, name = m.group(1).rpartition(":")
        else:
            name, _, conv_name = m.group(2).partition(":")
        conv_name = conv_name or "str"
        if not name.isidentifier():
            raise RouteError(f"route {pattern!r}: parameter {m.group(0)} needs a valid Python name")
        if conv_name not in CONVERTERS:
            known = ", ".join(sorted(CONVERTERS))
            hint = ""
            if name in CONVERTERS and conv_name.isidentifier():
                # The two spellings put the converter on opposite sides of the name.
                hint = f"; write <{name}:{conv_name}> or {{{conv_name}:{name}}}"
            raise RouteError(
                f"route {pattern!r}: unknown converter {conv_name!r} (known: {known}){hint}"
            )
        if name in converters:
            raise RouteError(f"route {pattern!r}: parameter {name!r} appears twice")
        conv = CONVERTERS[conv_name]
        converters[name] = conv.convert
        regex_parts.append(f"(?P<{name}>{conv.regex})")
        shape_parts.append(f"<{conv_name}>")
        pos = m.end()
    tail = pattern[pos:]
    _check_literal(pattern, tail)
    regex_parts.append(re.escape(tail))
    shape_parts.append(tail)
    if not converters:
        return CompiledPath(pattern, None, {}, pattern)
    return CompiledPath(
        pattern, re.compile("^" + "".join(regex_parts) + "$"), converters, "".join(shape_parts)
    )


def _check_literal(pattern: str, literal: str) -> None:
    if "<" in literal or ">" in literal:
        raise RouteError(f"route {pattern!r}: unbalanced '<' or '>'")
    if "{" in literal or "}" in literal:
        raise RouteError(f"route {pattern!r}: unbalanced '{{' or '}}'")


@dataclass(slots=True)
class Route:
    """One entry of the route table."""

    path: CompiledPath
    endpoint: Callable[..., Any]
    methods: frozenset[str]  # empty for a WebSocket route
    name: str
    # Whether the endpoint takes the Request/WebSocket as its first argument.
    pass_connection: bool = True
    # A WebSocket route's own authentication hook, if any.
    auth: Any = None

    def match(self, path: str) -> dict[str, Any] | None:
        """Return the converted path parameters, or None when ``path`` does not match."""
        if self.path.regex is None:
            return {} if path == self.path.pattern else None
        m = self.path.regex.match(path)
        if m is None:
            return None
        params: dict[str, Any] = {}
        for key, raw in m.groupdict().items():
            try:
                params[key] = self.path.converters[key](raw)
            except ValueError:
                return None
        return params


@dataclass(slots=True)
class Match:
    route: Route
    params: dict[str, Any]


@dataclass
class Router:
    """A route table: static paths in a dict, patterns tried in registration order."""

    _static: dict[str, list[Route]] = field(default_factory=dict)
    _dynamic: list[Route] = field(default_factory=list)
    _shapes: dict[str, list[Route]] = field(default_factory=dict)

    def add(
        self,
        pattern: str,
        endpoint: Callable[..., Any],
        methods: Iterable[str] = (),
        *,
        takes_connection: str = "connection",
    ) -> Route:
        """Register ``endpoint`` for ``pattern``.

        Raises:
            RouteError: bad pattern, non-async endpoint, parameters the endpoint cannot
                take, or a route already registered for the same path and method.
        """
        compiled = compile_path(pattern)
        if not inspect.iscoroutinefunction(endpoint):
            raise RouteError(f"route {pattern!r}: endpoint {endpoint!r} must be an async function")
        method_set = frozenset(m.upper() for m in methods)
        pass_connection = _check_signature(pattern, endpoint, compiled, takes_connection)
        for other in self._shapes.get(compiled.shape, []):
            overlap = (not method_set and not other.methods) or (method_set & other.methods)
            if overlap:
                what = ", ".join(sorted(method_set & other.methods)) or "websocket"
                raise RouteError(
                    f"route {pattern!r} ({what}) is already registered as {other.path.pattern!r}"
                )
        route = Route(
            compiled, endpoint, method_set, getattr(endpoint, "__name__", "?"), pass_connection
        )
        self._shapes.setdefault(compiled.shape, []).append(route)
        if compiled.regex is None:
            self._static.setdefault(pattern, []).append(route)
        else:
            self._dynamic.append(route)
        return route

    def resolve(self, path: str, method: str | None = None) -> tuple[Match | None, frozenset[str]]:
        """Find the route for ``path`` (and ``method`` for HTTP).

        Returns:
            The match, or None; and, when the path exists only for other methods, the
            methods it allows (for a 405 answer).
        """
        allowed: set[str] = set()
        for route in self._static.get(path, ()):
            if method is None or method in route.methods:
                return Match(route, {}), frozenset()
            allowed |= route.methods
        for route in self._dynamic:
            params = route.match(path)
            if params is None:
                continue
            if method is None or method in route.methods:
                return Match(route, params), frozenset()
            allowed |= route.methods
        return None, frozenset(allowed)


def _check_signature(
    pattern: str, endpoint: Callable[..., Any], compiled: CompiledPath, takes: str
) -> bool:
    """Check that ``endpoint`` can take the path parameters; tell if it takes the connection.

    The connection (Request or WebSocket) is passed positionally, so it binds to the
    first parameter of the signature: that one must not be a path parameter.
    """
    params = list(inspect.signature(endpoint).parameters.values())
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [n for n in compiled.converters if n not in names and not has_var_kw]
    if missing:
        raise RouteError(
            f"route {pattern!r}: endpoint {endpoint.__name__}() does not accept path "
            f"parameter(s) {', '.join(missing)}"
        )
    first = params[0] if params else None
    takes_connection = (
        first is not None
        and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)
        and first.name not in compiled.converters
    )
    if takes == "websocket" and not takes_connection:
        raise RouteError(
            f"route {pattern!r}: websocket endpoint {endpoint.__name__}() must take the "
            "WebSocket as its first argument (before any path parameter)"
        )
    connection = first if takes_connection else None
    required_extra = [
        p.name
        for p in params
        if p is not connection
        and p.name not in compiled.converters
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required_extra:
        raise RouteError(
            f"route {pattern!r}: endpoint {endpoint.__name__}() has required parameter(s) "
            f"{', '.join(required_extra)} that are not in the path"
        )
    return takes_connection
