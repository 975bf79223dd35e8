"""TypeScript from an app's OpenRPC document: its methods and events, typed, over the
browser client.

``typescript_stub(doc)`` reads the document gobstopper writes (``rpc.discover``) and
returns one TypeScript module: an interface (or a type) for each schema of
``components.schemas``, and a class that wraps a gobstopper.js ``Client`` with one method
per app method, its parameters and result typed from their JSON Schemas. A streaming
method takes ``onItem`` first (its parameters may be optional, a callback after them
could not be) and returns gobstopper.js's ``StreamCall``; the events the server handles
are under ``emit``, typed with their data and acknowledgement. The module imports only
types, from gobstopper.d.ts: it adds no code to load besides itself. See
docs/browser-client.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["typescript_stub"]

_REF = "#/components/schemas/"
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
# Not usable as a parameter's name (they are as a member's). Words: clearer than a list.
_RESERVED = frozenset(
    "await break case catch class const continue debugger default delete do else enum "  # noqa: SIM905
    "export extends false finally for function if implements import in instanceof "
    "interface let new null package private protected public return static super switch "
    "this throw true try typeof var void while with yield arguments eval".split()
)
_PRIMITIVES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
}
# The names the module itself uses: a schema may not take them, a parameter gets a "_".
_TAKEN = frozenset({"gobstopper", "positional", "onItem"})
# TypeScript's own types (the module uses some: Promise, Extract): a schema of that name
# would hide them, or cannot be declared at all (string): it gets a "_".
_GLOBALS = frozenset(
    "string number boolean bigint symbol object undefined null unknown never any void "  # noqa: SIM905
    "Array ArrayBuffer ArrayLike BigInt Boolean DataView Date Error Exclude Extract "
    "Function Iterable Iterator JSON Map Math NonNullable Number Object Omit Partial Pick "
    "Promise PromiseLike Readonly ReadonlyArray Record RegExp Required ReturnType Set "
    "String Symbol Uint8Array WeakMap WeakSet".split()
)
# The wrapper's own members: an app method of that name gets a "_" after it.
_MEMBERS = frozenset({"client", "emit", "constructor"})


@dataclass
class _Context:
    """The schemas (``components.schemas``) and their TypeScript names, by their names in
    the document."""

    schemas: Mapping[str, Any]
    names: dict[str, str] = field(default_factory=dict)


def typescript_stub(
    doc: Mapping[str, Any],
    *,
    client_types: str = "./gobstopper",
    class_name: str | None = None,
) -> str:
    """A TypeScript module typing the methods and events of the app ``doc`` describes.

    Args:
        doc: the app's OpenRPC document, as ``rpc.discover`` answers it.
        client_types: where the module imports gobstopper.d.ts's types from.
        class_name: the wrapper class's name; by default the document's title in
            PascalCase followed by ``Api`` (``chat``: ``ChatApi``).

    Raises:
        TypeError: ``doc`` is not a mapping.
        ValueError: ``doc`` is not OpenRPC as gobstopper writes it (no ``methods`` list,
            a method without a name, a ``$ref`` outside ``#/components/schemas/``, a
            schema it cannot read), two names end up the same identifier, or
            ``class_name`` is not an identifier.
    """
    if not isinstance(doc, Mapping):
        raise TypeError(f"an OpenRPC document is a mapping, not {type(doc).__name__}")
    info = doc.get("info") or {}
    title = str(info.get("title") or "gobstopper")
    version = str(info.get("version") or "0.0.0")
    methods = doc.get("methods")
    if not isinstance(methods, list):
        raise ValueError("the OpenRPC document has no 'methods' list")
    events = doc.get("x-gobstopper-events") or []
    if not isinstance(events, list):
        raise ValueError("'x-gobstopper-events' must be a list")
    schemas = (doc.get("components") or {}).get("schemas") or {}
    if not isinstance(schemas, Mapping):
        raise ValueError("'components.schemas' must be an object")

    ctx = _Context(schemas=schemas)
    for name in schemas:
        ident = _type_name(name)
        ident = ident + "_" if ident in _GLOBALS else ident
        ctx.names[name] = _unique(ident, ctx.names.values(), f"schema {name!r}")
    name = class_name if class_name is not None else _pascal(title) + "Api"
    if not _IDENT.match(name) or name in _RESERVED or name in _GLOBALS:
        raise ValueError(f"class_name {name!r} is not a TypeScript identifier")
    _unique(name, ctx.names.values(), "the class")
    title, version = _comment(title), _comment(version)

    out = [
        f"// {title} {version}: its methods and events, typed, over gobstopper.js.",
        "// Generated by gobstopper.codegen.typescript from its OpenRPC document: generate",
        "// it again rather than edit it.",
        "",
        f"import type * as gobstopper from {json.dumps(client_types)};",
        "",
    ]
    for schema_name, schema in schemas.items():
        out += _declaration(ctx.names[schema_name], schema, ctx, f"schema {schema_name!r}")
    body = _class(name, title, version, methods, events, ctx)
    if any(m.get("paramStructure") == "by-position" for m in methods if isinstance(m, Mapping)):
        out += _POSITIONAL
    return "\n".join(out + body) + "\n"


_POSITIONAL = [
    "// Positional params without the trailing ones left out (the server's defaults apply).",
    "// One left out before a given one cannot be: it is sent as null (pass its value).",
    "function positional(...values: unknown[]): unknown[] {",
    "  let end = values.length;",
    "  while (end > 0 && values[end - 1] === undefined) end -= 1;",
    "  return values.slice(0, end);",
    "}",
    "",
]


# -- names ------------------------------------------------------------------------------


def _unique(name: str, taken: Any, what: str) -> str:
    if name in taken or name in _TAKEN:
        raise ValueError(f"{what} would be named {name!r}, a name already taken")
    return name


def _type_name(name: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_$]", "_", name)
    return "_" + ident if not ident or ident[0].isdigit() else ident


def _pascal(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)
    name = "".join(w[0].upper() + w[1:] for w in words) or "Gobstopper"
    return "_" + name if name[0].isdigit() else name


def _member(name: str) -> str:
    """A method's or event's name as a member: ``account.withdraw``: ``accountWithdraw``."""
    parts = [p for p in re.split(r"[^A-Za-z0-9_$]+", name) if p]
    if not parts:
        raise ValueError(f"{name!r} has nothing to make a TypeScript name of")
    ident = parts[0] + "".join(p[0].upper() + p[1:] for p in parts[1:])
    ident = "_" + ident if ident[0].isdigit() else ident
    return ident + "_" if ident in _MEMBERS else ident


def _variable(name: str) -> str:
    ident = _type_name(name)
    return ident + "_" if ident in _RESERVED or ident in _TAKEN else ident


def _comment(text: str) -> str:
    """``text`` on one line, unable to end a comment."""
    return " ".join(re.split(r"[\r\n\u2028\u2029]+", text)).replace("*/", "*\\/")


def _key(name: str) -> str:
    return name if _IDENT.match(name) else json.dumps(name)


def _doc(text: Any, indent: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return []
    lines = text.strip().replace("*/", "*\\/").splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


# -- schemas ----------------------------------------------------------------------------


def _type(schema: Any, ctx: _Context, where: str) -> str:
    """The TypeScript type of a JSON Schema (the subset msgspec writes)."""
    if schema is True or schema == {}:
        return "unknown"
    if schema is False:
        return "never"
    if not isinstance(schema, Mapping):
        raise ValueError(f"{where}: a schema is an object, not {schema!r}")
    if "$ref" in schema:
        return _ref(schema["$ref"], ctx, where)
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        return " | ".join(_literal(v) for v in schema["enum"]) or "never"
    for key, joiner in (("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")):
        if key in schema:
            parts = [_wrap(_type(s, ctx, f"{where}.{key}")) for s in schema[key]]
            return joiner.join(dict.fromkeys(parts)) or "never"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_wrap(_type({**schema, "type": k}, ctx, where)) for k in kind)
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "array":
        return _array(schema, ctx, where)
    if kind == "object" or "properties" in schema:
        return _object(schema, ctx, where)
    if kind is None:
        return "unknown"
    raise ValueError(f"{where}: unknown type {kind!r}")


def _ref(ref: Any, ctx: _Context, where: str) -> str:
    if not isinstance(ref, str) or not ref.startswith(_REF):
        raise ValueError(f"{where}: $ref {ref!r} does not point into {_REF}")
    name = ref[len(_REF) :]
    if name not in ctx.names:
        raise ValueError(f"{where}: $ref {ref!r} names no schema of components.schemas")
    return ctx.names[name]


def _literal(value: Any) -> str:
    if value is None or isinstance(value, (str, bool, int, float)):
        return json.dumps(value)
    return "unknown"  # an object or array constant: TypeScript has no literal type for it


def _wrap(ts: str) -> str:
    return f"({ts})" if " | " in ts or " & " in ts else ts


def _array(schema: Mapping[str, Any], ctx: _Context, where: str) -> str:
    items = schema.get("items", {})
    if "prefixItems" in schema:  # a tuple
        head = [_type(s, ctx, f"{where}.prefixItems") for s in schema["prefixItems"]]
        if items is not False:
            head.append(f"...{_wrap(_type(items, ctx, f'{where}.items'))}[]")
        return "[" + ", ".join(head) + "]"
    return _wrap(_type(items, ctx, f"{where}.items")) + "[]"


def _fields(schema: Mapping[str, Any], ctx: _Context, where: str) -> list[tuple[str, str, Any]]:
    """The object's members: (key and mark, type, description)."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    members = [
        (_key(n) + ("" if n in required else "?"), _type(s, ctx, f"{where}.{n}"), _describe(s))
        for n, s in props.items()
    ]
    extra = schema.get("additionalProperties", not props)
    if extra is not False:
        # An index signature must admit every named member's type too.
        value = "unknown" if props or extra is True else _type(extra, ctx, where)
        members.append(("[key: string]", value, None))
    return members


def _describe(schema: Any) -> Any:
    return schema.get("description") if isinstance(schema, Mapping) else None


def _object(schema: Mapping[str, Any], ctx: _Context, where: str) -> str:
    members = _fields(schema, ctx, where)
    return "{ " + "; ".join(f"{k}: {t}" for k, t, _ in members) + " }" if members else "{}"


def _declaration(name: str, schema: Any, ctx: _Context, where: str) -> list[str]:
    lines = _doc(_describe(schema), "")
    plain = (
        isinstance(schema, Mapping)
        and schema.get("type") == "object"
        and not any(k in schema for k in ("$ref", "anyOf", "oneOf", "allOf", "enum", "const"))
    )
    if not plain:
        return [*lines, f"export type {name} = {_type(schema, ctx, where)};", ""]
    lines.append(f"export interface {name} {{")
    for key, ts, description in _fields(schema, ctx, where):
        lines += _doc(description, "  ")
        lines.append(f"  {key}: {ts};")
    return [*lines, "}", ""]


# -- the class --------------------------------------------------------------------------


@dataclass
class _Param:
    name: str
    variable: str
    ts: str
    required: bool


def _params(entry: Mapping[str, Any], ctx: _Context, where: str) -> list[_Param]:
    params = entry.get("params") or []
    if not isinstance(params, list):
        raise ValueError(f"{where}: 'params' must be a list")
    found: list[_Param] = []
    for p in params:
        if not isinstance(p, Mapping) or not isinstance(p.get("name"), str):
            raise ValueError(f"{where}: a parameter without a name: {p!r}")
        ts = _type(p.get("schema", {}), ctx, f"{where} parameter {p['name']!r}")
        variable = _variable(p["name"])
        for other in found:
            if other.variable == variable:
                raise ValueError(
                    f"{where}: parameters {other.name!r} and {p['name']!r} would both be "
                    f"named {variable!r}"
                )
        found.append(_Param(p["name"], variable, ts, bool(p.get("required"))))
    return found


def _signature(params: Sequence[_Param]) -> list[str]:
    # An optional parameter before a required one (a keyword-only one in Python) is
    # required in TypeScript, and takes undefined.
    last = max((i for i, p in enumerate(params) if p.required), default=-1)
    return [
        f"{p.variable}: {p.ts}"
        if p.required
        else (f"{p.variable}: {p.ts} | undefined" if i < last else f"{p.variable}?: {p.ts}")
        for i, p in enumerate(params)
    ]


def _arguments(params: Sequence[_Param], structure: Any) -> str:
    if not params:
        return ""
    if structure == "by-position":
        return ", positional(" + ", ".join(p.variable for p in params) + ")"
    pairs = [
        p.variable if p.variable == p.name else f"{_key(p.name)}: {p.variable}" for p in params
    ]
    return ", { " + ", ".join(pairs) + " }"


def _result(entry: Mapping[str, Any], ctx: _Context, where: str) -> str | None:
    result = entry.get("result")
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise ValueError(f"{where}: 'result' must be an object")
    return _type(result.get("schema", {}), ctx, f"{where} result")


def _method(entry: Any, ctx: _Context) -> tuple[str, list[str]]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise ValueError(f"a method without a name: {entry!r}")
    name = entry["name"]
    where = f"method {name!r}"
    params = _params(entry, ctx, where)
    result = _result(entry, ctx, where) or "unknown"
    signature = _signature(params)
    args = _arguments(params, entry.get("paramStructure"))
    lines = _doc(entry.get("description") or entry.get("summary"), "  ")
    member = _member(name)
    if entry.get("x-gobstopper-stream") is True:
        signature.insert(0, f"onItem: (item: {result}) => void")
        call = f"this.client.stream<{result}>({json.dumps(name)}{args or ', null'}, onItem)"
        lines += [
            f"  {member}({', '.join(signature)}): gobstopper.StreamCall<number> {{",
            f"    return {call};",
        ]
    else:
        lines += [
            f"  {member}({', '.join(signature)}): Promise<{result}> {{",
            f"    return this.client.call<{result}>({json.dumps(name)}{args});",
        ]
    return member, [*lines, "  }", ""]


def _event(entry: Any, ctx: _Context) -> tuple[str, list[str], list[str]]:
    """An event's member: its name, its declaration, its definition."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise ValueError(f"an event without a name: {entry!r}")
    name = entry["name"]
    where = f"event {name!r}"
    params = _params(entry, ctx, where)
    if len(params) > 1:
        raise ValueError(f"{where}: an event has one data parameter at most, not {len(params)}")
    member = _member(name)
    ack = _result(entry, ctx, where)
    returns = f"Promise<{ack}>" if ack else "Promise<void>"
    options = f"<{ack}>({json.dumps(name)}, data, {{ ack: true }})" if ack else None
    if not params:
        call = f"client.emit<{ack}>({json.dumps(name)}, null, {{ ack: true }})" if ack else None
        call = call or f"client.emit({json.dumps(name)})"
        return member, [f"    {member}(): {returns};"], [f"      {member}: () => {call},"]
    data = params[0]
    schema = next(p for p in entry["params"] if p["name"] == data.name).get("schema", {})
    kinds = _kinds(schema, ctx, set())
    if kinds == {"primitive"}:
        note = f"    // {_comment(name)}: its data ({data.ts}) cannot be JSON-RPC params, "
        return member, [note + "an object or array"], []
    ts = "gobstopper.Params" if data.ts == "unknown" else data.ts
    if "primitive" in kinds:  # only its objects and arrays can be sent
        ts = f"Extract<{ts}, gobstopper.Params>"
    mark = "" if data.required else "?"
    call = f"client.emit{options}" if options else f"client.emit({json.dumps(name)}, data)"
    doc = _doc(entry.get("description") or entry.get("summary"), "    ")
    declaration = [*doc, f"    {member}(data{mark}: {ts}): {returns};"]
    return member, declaration, [f"      {member}: (data) => {call},"]


def _kinds(schema: Any, ctx: _Context, seen: set[str]) -> set[str]:
    """What the values of ``schema`` can be: "primitive" (a string, number, boolean or
    null), "params" (an object or an array), "any"; through $ref (an Enum or Literal
    alias of components.schemas) and unions."""
    if not isinstance(schema, Mapping) or not schema:
        return {"any"}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        if ref in seen:  # a recursive schema: what its other branches say
            return set()
        target = ctx.schemas.get(ref[len(_REF) :])
        return _kinds(target, ctx, seen | {ref}) if target is not None else {"any"}
    if "const" in schema:
        return {"params" if isinstance(schema["const"], (dict, list)) else "primitive"}
    if "enum" in schema and isinstance(schema["enum"], list):
        return {"params" if isinstance(v, (dict, list)) else "primitive" for v in schema["enum"]}
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return set().union(*(_kinds(s, ctx, seen) for s in schema[key])) or {"any"}
    kind = schema.get("type")
    types = kind if isinstance(kind, list) else [kind]
    if types and all(k in _PRIMITIVES for k in types):
        return {"primitive"}
    if any(k in _PRIMITIVES for k in types):
        return {"primitive", "params"}
    return {"params"} if kind is not None or "properties" in schema else {"any"}


def _class(
    name: str, title: str, version: str, methods: list[Any], events: list[Any], ctx: _Context
) -> list[str]:
    members: dict[str, str] = {}

    def claim(member: str, what: str) -> None:
        if member in members:
            raise ValueError(f"{what} and {members[member]} are both named {member!r}")
        members[member] = what

    body: list[str] = []
    for entry in methods:
        member, lines = _method(entry, ctx)
        claim(member, f"method {entry['name']!r}")
        body += lines
    declarations: list[str] = []
    definitions: list[str] = []
    emitted: dict[str, str] = {}
    for entry in events:
        member, declaration, definition = _event(entry, ctx)
        if definition and member in emitted:
            raise ValueError(
                f"events {emitted[member]!r} and {entry['name']!r} are both {member!r}"
            )
        if definition:
            emitted[member] = entry["name"]
        declarations += declaration
        definitions += definition
    head = [
        f"/** The methods and events of {title} {version}, over a gobstopper.js client. */",
        f"export class {name} {{",
        "  readonly client: gobstopper.Client;",
    ]
    constructor = ["  constructor(client: gobstopper.Client) {", "    this.client = client;"]
    if declarations:
        head += ["  /** The events the server handles, sent with client.emit. */"]
        head += ["  readonly emit: {", *declarations, "  };"]
        constructor += ["    this.emit = {", *definitions, "    };"]
    # Methods after the constructor, each followed by a blank line but the last.
    return [*head, "", *constructor, "  }", *(["", *body[:-1]] if body else []), "}"]
