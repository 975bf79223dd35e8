"""A typed Python client from an OpenRPC document: a module with a subclass of
``gobstopper.client.Client`` whose methods have the server's signatures.

- A method becomes ``async def add(self, a: float, b: float) -> float`` calling
  ``self.call``; a stream (``x-gobstopper-stream``) a plain ``def`` returning
  ``AsyncIterator[Item]`` (``self.stream``: leaving the loop early cancels it).
- An event of ``x-gobstopper-events`` becomes ``emit_<name>(data)``: returning the
  handler's acknowledgement when the document gives a result (sent with ``ack``),
  else ``None`` (``ack=True`` waits for the handler to have run).
- Each object schema of ``components.schemas`` becomes a ``TypedDict``: what travels is
  JSON, and a TypedDict is a plain dict, sent and received as it is (results are not
  validated: they are what the server sent, typed by ``cast``). Other components
  become type aliases.

Names that are not Python identifiers, keywords, or names ``Client`` already has are
changed (``from`` -> ``from_``, ``chat.send`` -> ``chat_send``, ``close`` -> ``close_``);
the wire names are kept.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping
from typing import Any

from .document import check_document

__all__ = ["check_document", "python_stub"]

_REF = "#/components/schemas/"

#: Names the generated code uses inside method bodies and annotations: a parameter or
#: method of the same name would shadow them.
_USED = frozenset(
    [
        "self",
        "_cast",
        "Any",
        "AsyncIterator",
        "Literal",
        "TypeAlias",
        "TypedDict",
        "Client",
        "int",
        "float",
        "str",
        "bool",
        "list",
        "dict",
        "tuple",
        "None",
        "object",
    ]
)

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def python_stub(doc: Mapping[str, Any], *, class_name: str | None = None) -> str:
    """The source of a typed client module for the OpenRPC document ``doc``.

    Args:
        doc: an OpenRPC document (``rpc.discover``'s answer, ``docs/openrpc.md``).
        class_name: the client class's name (default: from ``info.title``, e.g.
            ``GobstopperClient``).

    Raises:
        ValueError: ``doc`` is not an OpenRPC document (no ``methods`` list), a
            ``$ref`` points outside ``#/components/schemas``, or ``gobstopper.client``
            cannot be imported (``websockets`` is missing).
    """
    check_document(doc)
    methods = doc["methods"]
    info = doc.get("info") or {}
    title = str(info.get("title", "gobstopper"))
    schemas = (doc.get("components") or {}).get("schemas") or {}
    name = _unique(class_name or _camel(title) + "Client", set(_USED))
    types = _Types(schemas, {name})
    reserved = set(_client_names()) | _USED | set(types.names.values()) | {name}
    body: list[str] = []
    for method in methods:
        body += _method(method, types, reserved)
    for event in doc.get("x-gobstopper-events") or []:
        body += _event(event, types, reserved)
    # What the docstrings say of the document, escaped as descriptions are.
    about = _escape(" ".join(t for t in (title, str(info.get("version", ""))) if t))
    declarations = types.declarations()
    used = "\n".join(declarations + body)
    typing_names = [n for n in ("Any", "Literal", "TypeAlias", "TypedDict") if n in used]
    lines = [
        f'"""A typed client of {about}, from its OpenRPC document.',
        "",
        "Made by ``python -m gobstopper stubs``: regenerate it rather than edit it.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        *(["from collections.abc import AsyncIterator"] if "AsyncIterator" in used else []),
        *([f"from typing import {', '.join(typing_names)}"] if typing_names else []),
        *(["from typing import cast as _cast"] if "_cast(" in used else []),
        "",
        "from gobstopper.client import Client",
        "",
        f"__all__ = [{', '.join(_q(n) for n in sorted([name, *types.names.values()]))}]",
        "",
        *declarations,
        "",
        f"class {name}(Client):",
        f'    """The methods, streams and events of {about}."""',
        *(body or ["    pass"]),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _escape(text: str) -> str:
    """``text`` made safe inside a ``\"\"\"`` string: no quote can end it, no backslash
    start an escape, no control character or lone surrogate break the source."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(c if c in "\n\t" or c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    """A character as its escape in a Python string: ``\\x00``, ``\\ud800``."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _q(text: str) -> str:
    """``text`` as a Python string literal, in double quotes."""
    return json.dumps(text, ensure_ascii=False)


def _literal(value: Any) -> str:
    """A JSON value as a Python literal, strings in double quotes."""
    if isinstance(value, str):
        return _q(value)
    if isinstance(value, list):
        return f"[{', '.join(_literal(v) for v in value)}]"
    if isinstance(value, dict):
        return f"{{{', '.join(f'{_q(str(k))}: {_literal(v)}' for k, v in value.items())}}}"
    return repr(value)


def _client_names() -> list[str]:
    """The attributes of ``Client``: what a generated method must not hide."""
    try:
        from ..client import Client
    except ImportError as exc:  # websockets: the stubs are of no use without it either
        raise ValueError(
            f"Python stubs subclass gobstopper.client.Client, which cannot be imported ({exc}):"
            " pip install -e '.[client]'"
        ) from None
    return dir(Client)


def _method(method: Mapping[str, Any], types: _Types, reserved: set[str]) -> list[str]:
    wire = str(method["name"])
    name = _unique(_identifier(wire), reserved)
    params = list(method.get("params") or [])
    structure = method.get("paramStructure", "either")
    signature, args = _signature(params, types, structure)
    result = (method.get("result") or {}).get("schema", {})
    returns = types.render(result)
    doc = _docstring(method)
    if method.get("x-gobstopper-stream"):
        iterator = f"AsyncIterator[{returns}]"
        return [
            "",
            *_def(f"    def {name}", signature, iterator),
            *doc,
            *args.setup,
            f"        return _cast({_q(iterator)}, self.stream({_q(wire)}{args.call}))",
        ]
    value = f"await self.call({_q(wire)}{args.call})"
    answer = value if returns == "Any" else f"_cast({_q(returns)}, {value})"
    return [
        "",
        *_def(f"    async def {name}", signature, returns),
        *doc,
        *args.setup,
        f"        return {answer}",
    ]


def _event(event: Mapping[str, Any], types: _Types, reserved: set[str]) -> list[str]:
    wire = str(event["name"])
    name = _unique("emit_" + _identifier(wire).lstrip("_"), reserved)
    params = list(event.get("params") or [])
    doc = _docstring(event)
    data = ""
    signature = ["self"]
    if params:
        taken = _USED | {"ack", *types.names.values()}
        param = _identifier(str(params[0]["name"]), frozenset(taken))
        signature.append(f"{param}: {types.render(params[0].get('schema', {}))}")
        data = f", {param}"
    if "result" not in event:
        return [
            "",
            *_def(f"    async def {name}", [*signature, "*", "ack: bool = False"], "None"),
            *doc,
            f"        await self.emit({_q(wire)}{data}, ack=ack)",
        ]
    returns = types.render(event["result"].get("schema", {}))
    value = f"await self.emit({_q(wire)}{data}, ack=True)"
    answer = value if returns == "Any" else f"_cast({_q(returns)}, {value})"
    return [
        "",
        *_def(f"    async def {name}", signature, returns),
        *doc,
        f"        return {answer}",
    ]


class _Args:
    """How a method body passes its parameters: ``call`` follows the method's name in
    ``self.call(...)``; ``setup`` are the lines before it."""

    def __init__(self, call: str, setup: list[str]) -> None:
        self.call = call
        self.setup = setup


def _signature(params: list[Any], types: _Types, structure: str) -> tuple[list[str], _Args]:
    taken = set(_USED) | set(types.names.values()) | {"params", "tail"}
    parts = ["self"]
    names: list[tuple[str, str, bool]] = []  # wire name, Python name, may be left out
    optional = False  # whether a parameter with a default came before
    for param in params:
        wire = str(param["name"])
        local = _unique(_identifier(wire), taken)
        schema = param.get("schema", {})
        hint = types.render(schema)
        if param.get("required", False):
            if optional and "*" not in parts:
                # Python takes no required parameter after an optional one unless it is
                # keyword-only; how the call is sent is decided below, not by this.
                parts.append("*")
            parts.append(f"{local}: {hint}")
        elif "default" in schema:
            optional = True
            parts.append(f"{local}: {hint} = {types.default(schema['default'], schema)}")
        else:
            # Absent, not null: the server gives it its own default.
            optional = True
            maybe = _union([hint, "None"])
            parts.append(f"{local}: {maybe} = None")
            names.append((wire, local, True))
            continue
        names.append((wire, local, False))
    if structure == "by-position" or (
        structure == "either" and not any(omit for _, _, omit in names)
    ):
        if not any(omit for _, _, omit in names):
            return parts, _Args("".join(f", {n}" for _, n, _ in names), [])
        # The parameters left out after the last one given are absent; before it, null.
        fixed = max((i + 1 for i, (_, _, omit) in enumerate(names) if not omit), default=0)
        tail = ", ".join(n for _, n, _ in names[fixed:])
        setup = [f"        params: list[Any] = [{', '.join(n for _, n, _ in names[:fixed])}]"]
        setup.append(f"        tail: list[Any] = [{tail}]")
        setup.append("        while tail and tail[-1] is None:")
        setup.append("            tail.pop()")
        return parts, _Args(", *params, *tail", setup)
    given = ", ".join(f"{_q(w)}: {n}" for w, n, omit in names if not omit)
    setup = [f"        params: dict[str, Any] = {{{given}}}"]
    for w, n, omit in names:
        if omit:
            setup += [f"        if {n} is not None:", f"            params[{_q(w)}] = {n}"]
    return parts, _Args(", **params", setup)


def _def(head: str, params: list[str], returns: str) -> list[str]:
    """A ``def`` line, split as ruff would format it when over 100 characters."""
    line = f"{head}({', '.join(params)}) -> {returns}:"
    if len(line) <= 100:
        return [line]
    inner = f"        {', '.join(params)}"
    if len(inner) <= 100:
        return [f"{head}(", inner, f"    ) -> {returns}:"]
    return [f"{head}(", *(f"        {p}," for p in params), f"    ) -> {returns}:"]


def _docstring(entry: Mapping[str, Any], indent: str = "        ") -> list[str]:
    """The docstring of a method or class from ``description`` (or ``summary``)."""
    text = str(entry.get("description") or entry.get("summary") or "").strip()
    if not text:
        return []
    # Escaped so that no text can end the string early or be read as an escape.
    lines = _escape(text).splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    rest = [f"{indent}{line}".rstrip() for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *rest, f'{indent}"""']


class _Types:
    """Python types for JSON schemas, and the declarations of the components."""

    def __init__(self, schemas: Mapping[str, Any], reserved: set[str]) -> None:
        self.schemas = schemas
        taken = set(_USED) | reserved
        #: Python names of the components, by their names in the document.
        self.names = {key: _unique(_camel(key), taken) for key in schemas}

    def render(self, schema: Any) -> str:
        """The annotation for ``schema`` (``Any`` for what it cannot say better)."""
        if not isinstance(schema, Mapping):
            return "Any"
        if "$ref" in schema:
            ref = str(schema["$ref"])
            if not ref.startswith(_REF) or ref[len(_REF) :] not in self.names:
                raise ValueError(f"a $ref that is not one of #/components/schemas: {ref!r}")
            return self.names[ref[len(_REF) :]]
        if "const" in schema:
            return f"Literal[{_literal(schema['const'])}]"
        if "enum" in schema:
            values = schema["enum"]
            literal = [v for v in values if v is not None]
            parts = [f"Literal[{', '.join(_literal(v) for v in literal)}]"] if literal else []
            return _union(parts + (["None"] if None in values else []))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return _union([self.render(s) for s in schema[key]])
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union([self.render({**schema, "type": k}) for k in kind])
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            fixed = _tuple(schema)
            if fixed is not None:
                items = ", ".join(self.render(s) for s in fixed)
                return f"tuple[{items}]" if items else "tuple[()]"
            return f"list[{self.render(schema.get('items', {}))}]"
        if kind == "object":
            extra = schema.get("additionalProperties")
            value = self.render(extra) if isinstance(extra, Mapping) else "Any"
            return f"dict[str, {value}]"
        return "Any"

    def default(self, value: Any, schema: Any) -> str:
        """A default ``value`` (JSON) as a literal of ``schema``'s type: an array a
        tuple when the schema is a tuple's (through ``$ref`` too)."""
        seen: set[str] = set()
        while isinstance(schema, Mapping) and "$ref" in schema:
            ref = str(schema["$ref"])[len(_REF) :]
            if ref in seen:
                break
            seen.add(ref)
            schema = self.schemas.get(ref)
        if not isinstance(value, list) or not isinstance(schema, Mapping):
            return _literal(value)
        fixed = _tuple(schema)
        if fixed is None:
            return _literal(value)
        items = [self.default(v, s) for v, s in zip(value, fixed, strict=False)]
        items += [_literal(v) for v in value[len(fixed) :]]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"

    def declarations(self) -> list[str]:
        lines: list[str] = []
        for key, schema in self.schemas.items():
            lines += ["", *self._declaration(self.names[key], schema), ""]
        return lines

    def _declaration(self, name: str, schema: Mapping[str, Any]) -> list[str]:
        properties = schema.get("properties")
        if schema.get("type") != "object" or not isinstance(properties, Mapping):
            return [f"{name}: TypeAlias = {_q(self.render(schema))}"]
        required = set(schema.get("required") or ())
        fields = [(key, self.render(s), key in required) for key, s in properties.items()]
        docline = _docstring(schema, "    ")
        if any(not key.isidentifier() or keyword.iskeyword(key) for key, _, _ in fields):
            # Keys a class body cannot declare: the functional form, whose keys are strings,
            # with the required and the optional keys in two bases.
            lines: list[str] = []
            bases: list[str] = []
            for part, total in (("Required", True), ("Optional", False)):
                items = ", ".join(f"{_q(k)}: {_q(h)}" for k, h, r in fields if r is total)
                if items:
                    base = f"_{name}{part}"
                    flag = "" if total else ", total=False"
                    lines.append(f"{base} = TypedDict({_q(base)}, {{{items}}}{flag})")
                    bases.append(base)
            return [
                *lines,
                "",
                "",
                f"class {name}({', '.join(bases)}):",
                *(docline or ["    pass"]),
            ]
        must = [f"    {key}: {hint}" for key, hint, r in fields if r]
        may = [f"    {key}: {hint}" for key, hint, r in fields if not r]
        if not may:
            return [f"class {name}(TypedDict):", *docline, *(must or ["    pass"])]
        if not must:
            return [f"class {name}(TypedDict, total=False):", *docline, *may]
        # Some keys required, some not (typing.Required is 3.11+): a required base.
        base = f"_{name}Required"
        return [
            f"class {base}(TypedDict):",
            *must,
            "",
            "",
            f"class {name}({base}, total=False):",
            *docline,
            *may,
        ]


def _tuple(schema: Mapping[str, Any]) -> list[Any] | None:
    """The schemas of a tuple's items (draft-07 ``items`` list, or 2020-12
    ``prefixItems``); None when ``schema`` is no tuple."""
    for key in ("prefixItems", "items"):
        if isinstance(schema.get(key), list):
            return list(schema[key])
    return None


def _split(union: str) -> list[str]:
    """The members of an annotation ``A | B[C | D]`` (``A``, ``B[C | D]``)."""
    parts: list[str] = []
    depth = start = 0
    quoted = escaped = False  # inside a string of a Literal
    for i, c in enumerate(union):
        if quoted:
            escaped, quoted = (False, True) if escaped else (c == "\\", c != '"')
            continue
        quoted = c == '"'
        depth += (c == "[") - (c == "]")
        if depth == 0 and union.startswith(" | ", i):
            parts.append(union[start:i])
            start = i + 3
    return [*parts, union[start:]]


def _union(parts: list[str]) -> str:
    unique = list(dict.fromkeys(p for part in parts for p in _split(part)))
    return "Any" if "Any" in unique else " | ".join(unique) or "Any"


def _identifier(name: str, reserved: frozenset[str] = frozenset()) -> str:
    """``name`` as a Python identifier: other characters become ``_``; a keyword or a
    reserved name gets a ``_`` after it."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    if keyword.iskeyword(ident) or ident in reserved:
        ident += "_"
    return ident


def _unique(ident: str, taken: set[str]) -> str:
    """``ident``, with ``_`` appended until it is not in ``taken`` (then added to it)."""
    ident = _identifier(ident)
    while ident in taken:
        ident += "_"
    taken.add(ident)
    return ident


def _camel(text: str) -> str:
    """``gobstopper example`` -> ``GobstopperExample``; an identifier keeps its case."""
    if text.isidentifier() and not keyword.iskeyword(text) and text[:1].isupper():
        return text
    words = re.findall(r"[A-Za-z0-9]+", text)
    camel = "".join(w[:1].upper() + w[1:] for w in words) or "Api"
    return camel if not camel[0].isdigit() else "_" + camel
