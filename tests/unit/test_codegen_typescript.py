"""The TypeScript stub generator: what it makes of an OpenRPC document, and the errors
naming what it cannot read. (``test_typescript.py`` type-checks its output with tsc.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gobstopper.codegen.typescript import typescript_stub

FIXTURE = Path(__file__).resolve().parents[1] / "ts" / "openrpc.json"


def document(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"openrpc": "1.3.2", "info": {"title": "t", "version": "1"}}
    doc["methods"] = []
    doc.update(extra)
    return doc


def method(name: str, *params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    result = {"name": "result", "schema": {"type": "integer"}}
    return {"name": name, "params": list(params), "result": result, **extra}


def param(name: str, schema: Any, required: bool = True) -> dict[str, Any]:
    return {"name": name, "required": required, "schema": schema}


@pytest.fixture
def stub() -> str:
    return typescript_stub(json.loads(FIXTURE.read_text()))


def test_schemas_become_interfaces_and_types(stub: str) -> None:
    assert "/** A chat room. */\nexport interface Room {\n  /** Its name, unique. */\n" in stub
    assert "  topic?: string | null;\n  members: string[];\n}" in stub
    assert 'export type Mode = "all" | "mine";' in stub
    assert '  "reply-to"?: number | null;' in stub
    assert "export type Shape = Circle | Square;" in stub


def test_methods_keep_the_servers_signatures(stub: str) -> None:
    assert "export class ChatApi {" in stub
    assert "  add(a: number, b?: number): Promise<number> {\n" in stub
    assert '    return this.client.call<number>("add", { a, b });' in stub
    assert "  rooms(mode?: Mode): Promise<Room[]> {" in stub
    assert "  scores(): Promise<{ [key: string]: number }> {" in stub
    assert '    return this.client.call<{ [key: string]: number }>("scores");' in stub


def test_names_that_are_not_identifiers_are_made_into_ones(stub: str) -> None:
    # A dotted method name in camelCase; a reserved or dashed parameter renamed, sent
    # under its own name; an optional one before a required one takes undefined.
    assert (
        "  accountWithdraw(amount: number, default_: string | null | undefined, "
        "memo_text: string): Promise<{ left: number }> {" in stub
    )
    assert '{ amount, default: default_, "memo-text": memo_text }' in stub
    # A method named like the wrapper's own member gets a "_".
    assert "  emit_(payload: unknown): Promise<unknown> {" in stub


def test_by_position_methods_send_an_array(stub: str) -> None:
    assert "  move(to: [number, number], speed?: number): Promise<null> {" in stub
    assert 'this.client.call<null>("move", positional(to, speed));' in stub
    assert "function positional(...values: unknown[]): unknown[] {" in stub
    without = typescript_stub(document(methods=[method("m", param("a", {}))]))
    assert "function positional" not in without


def test_streams_take_on_item_first_and_return_a_stream_call(stub: str) -> None:
    assert (
        "  count(onItem: (item: number) => void, n: number, step?: number): "
        "gobstopper.StreamCall<number> {\n"
        '    return this.client.stream<number>("count", { n, step }, onItem);' in stub
    )
    assert 'this.client.stream<Message>("ticks", null, onItem);' in stub


def test_events_are_typed_under_emit(stub: str) -> None:
    assert "    join(data: Room): Promise<string[]>;" in stub
    assert '      join: (data) => client.emit<string[]>("join", data, { ack: true }),' in stub
    assert "    typing(data: { room: string }): Promise<void>;" in stub
    assert '      ping: () => client.emit("ping"),' in stub
    assert '      poke: () => client.emit<boolean>("poke", null, { ack: true }),' in stub
    assert "    note(data?: gobstopper.Params): Promise<void>;" in stub
    # Data that cannot be params: said so, not wrapped.
    assert "    // shout: its data (string) cannot be JSON-RPC params" in stub
    assert "  shout: (data)" not in stub and "shout(" not in stub


def test_types_come_from_the_client_declarations() -> None:
    doc = document(info={})
    stub = typescript_stub(doc, client_types="../lib/gobstopper")
    assert 'import type * as gobstopper from "../lib/gobstopper";' in stub
    assert "export class GobstopperApi {" in stub
    assert "readonly emit" not in stub  # no events
    assert "export class Rpc {" in typescript_stub(doc, class_name="Rpc")


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"openrpc": "1.3.2"}, "no 'methods' list"),
        (document(methods=[{"params": []}]), "a method without a name"),
        (
            document(methods=[method("m", param("a", {"$ref": "#/$defs/A"}))]),
            "method 'm' parameter 'a': $ref '#/$defs/A' does not point into",
        ),
        (
            document(methods=[method("m", param("a", {"$ref": "#/components/schemas/A"}))]),
            "names no schema of components.schemas",
        ),
        (
            document(methods=[method("m", param("a", {"type": "decimal"}))]),
            "unknown type 'decimal'",
        ),
        (
            document(methods=[method("a.b"), method("aB")]),
            "method 'aB' and method 'a.b' are both named 'aB'",
        ),
        (
            document(**{"x-gobstopper-events": [method("e", param("a", {}), param("b", {}))]}),
            "event 'e': an event has one data parameter at most, not 2",
        ),
        (
            document(components={"schemas": {"A-B": {}, "A_B": {}}}),
            "schema 'A_B' would be named 'A_B', a name already taken",
        ),
        (document(methods=[method("m", {"schema": {}})]), "a parameter without a name"),
    ],
)
def test_what_it_cannot_read_is_named(doc: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as raised:
        typescript_stub(doc)
    assert error in str(raised.value)


def test_a_bad_class_name_or_document_is_refused() -> None:
    with pytest.raises(ValueError, match="class_name 'my api' is not a TypeScript identifier"):
        typescript_stub(document(), class_name="my api")
    with pytest.raises(TypeError, match="a mapping, not list"):
        typescript_stub([])  # type: ignore[arg-type]


def test_a_parameter_named_like_the_modules_own_names_is_renamed() -> None:
    stream = method("s", param("onItem", {"type": "string"}), **{"x-gobstopper-stream": True})
    stub = typescript_stub(document(methods=[stream]))
    assert "  s(onItem: (item: number) => void, onItem_: string): " in stub
    assert '"s", { onItem: onItem_ }, onItem)' in stub


COLOR = {"title": "Color", "enum": ["red", "blue"]}


def event(name: str, schema: Any) -> dict[str, Any]:
    return {"name": name, "params": [param("data", schema)]}


def test_event_data_that_can_only_be_primitive_is_left_out_through_refs_and_unions() -> None:
    doc = document(
        components={"schemas": {"Color": COLOR, "Pair": {"type": "array"}}},
        **{
            "x-gobstopper-events": [
                event("paint", {"$ref": "#/components/schemas/Color"}),
                event("maybe", {"anyOf": [{"type": "string"}, {"type": "null"}]}),
                event("fixed", {"const": 3}),
                event("pair", {"$ref": "#/components/schemas/Pair"}),
                event("either", {"anyOf": [{"$ref": "#/components/schemas/Pair"}, COLOR]}),
            ]
        },
    )
    stub = typescript_stub(doc)
    assert "    // paint: its data (Color) cannot be JSON-RPC params" in stub
    assert "    // maybe: its data (string | null) cannot be JSON-RPC params" in stub
    assert "    // fixed: its data (3) cannot be JSON-RPC params" in stub
    assert "paint(" not in stub and "maybe(" not in stub and "fixed(" not in stub
    assert "    pair(data: Pair): Promise<void>;" in stub
    # Only its objects and arrays can be params.
    assert '    either(data: Extract<Pair | ("red" | "blue"), gobstopper.Params>)' in stub


def test_schemas_named_like_typescripts_own_types_get_a_mark() -> None:
    schemas = {"Promise": {"type": "object"}, "string": {"type": "string"}, "Date": COLOR}
    ref = {"$ref": "#/components/schemas/Promise"}
    stub = typescript_stub(
        document(components={"schemas": schemas}, methods=[method("m", param("p", ref))])
    )
    assert "export interface Promise_ {" in stub
    assert "export type string_ = string;" in stub
    assert "export type Date_ = " in stub
    assert "  m(p: Promise_): Promise<number> {" in stub
    with pytest.raises(ValueError, match="class_name 'Promise' is not"):
        typescript_stub(document(), class_name="Promise")


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (
            method("m", param("default", {}), param("default_", {})),
            "method 'm': parameters 'default' and 'default_' would both be named 'default_'",
        ),
        (
            method("m", param("a-b", {}), param("a_b", {})),
            "parameters 'a-b' and 'a_b' would both be named 'a_b'",
        ),
        (
            method("s", param("onItem", {}), param("onItem_", {}), **{"x-gobstopper-stream": True}),
            "parameters 'onItem' and 'onItem_' would both be named 'onItem_'",
        ),
    ],
)
def test_parameters_that_would_share_a_name_are_refused(entry: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as raised:
        typescript_stub(document(methods=[entry]))
    assert error in str(raised.value)


def test_the_title_cannot_break_out_of_a_comment() -> None:
    doc = document(info={"title": "evil */ x\nimport 'y'", "version": "1\r\n*/"})
    stub = typescript_stub(doc, class_name="Api")
    assert stub.startswith("// evil *\\/ x import 'y' 1 *\\/: its methods and events")
    assert "/** The methods and events of evil *\\/ x import 'y' 1 *\\/, over" in stub
    assert "\nimport 'y'" not in stub and stub.count("*/") == 1  # the class's own comment
