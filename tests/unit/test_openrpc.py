"""The OpenRPC document of an endpoint: its pieces, its validity against the official
meta-schema, ``rpc.discover``, and the checked-in document of ``examples/rpc.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import jsonschema
import msgspec
import pytest
import referencing
from referencing.jsonschema import DRAFT7

from gobstopper import Connection, Event, WebSocket
from gobstopper.messages import RPC
from gobstopper.messages.openrpc import openrpc_document

from .rpc_peer import served

ROOT = Path(__file__).resolve().parents[2]
META = ROOT / "tests" / "meta_schema"
REGENERATE = "python -m gobstopper openrpc examples.rpc:rpc -o docs/openrpc.json"


def _validator(ref: str = "") -> jsonschema.Draft7Validator:
    """A validator of the OpenRPC meta-schema (at ``ref`` in it), offline: the JSON
    Schema meta-schema it refers to is vendored too."""
    meta = json.loads((META / "openrpc-1.14.9.json").read_text())
    tools = DRAFT7.create_resource(json.loads((META / "json-schema-tools-1.8.0.json").read_text()))
    registry = referencing.Registry().with_resources(
        [
            ("https://meta.json-schema.tools", tools),
            ("https://meta.json-schema.tools/", tools),
            ("https://meta.open-rpc.org/", DRAFT7.create_resource(meta)),
        ]
    )
    schema = {"$ref": "https://meta.open-rpc.org/" + ref} if ref else meta
    return jsonschema.Draft7Validator(schema, registry=registry)


def assert_valid_openrpc(doc: dict[str, Any]) -> None:
    """``doc`` is an OpenRPC document, its events are method objects, and every ``$ref``
    points at an entry of ``components.schemas``."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(doc)]
    assert not errors, errors
    method = _validator("#/definitions/methodObject")
    for event in doc.get("x-gobstopper-events", []):
        errors = [e.message for e in method.iter_errors(event)]
        assert not errors, (event, errors)
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


@dataclass
class Point:
    x: float
    y: float = 0.0


class Label(msgspec.Struct):
    text: str
    at: Point
    tags: list[str] = msgspec.field(default_factory=list)


class Options(TypedDict, total=False):
    colour: Literal["red", "blue"]


@dataclass
class Box:
    corner: Point
    notes: list[str] = field(default_factory=list)


class Opaque:
    """A class msgspec cannot describe."""


def endpoint() -> RPC:
    rpc = RPC(title="shapes", version="2.1.0")

    @rpc.method()
    async def move(p: Point, dx: float, dy: float = 1.5, label: str | None = None) -> Point:
        """Move a point."""
        return Point(p.x + dx, p.y + dy)

    @rpc.method()
    async def tag(label: Label, ws: WebSocket, conn: Connection) -> list[Label]:
        return [label]

    @rpc.method()
    async def paint(box: Box, options: Options | None = None) -> None:
        return None

    @rpc.method()
    async def ticks(n: int) -> AsyncIterator[Point]:
        yield Point(n, n)

    @rpc.method()
    async def words(n: int) -> AsyncGenerator[str, None]:
        yield str(n)

    @rpc.method()
    async def loose(a, b=2):  # type: ignore[no-untyped-def]
        return a

    @rpc.method()
    async def secret() -> Opaque:
        return Opaque()

    @rpc.method()
    async def named(a: int, *, scale: float = 1.0) -> float:
        return a * scale

    @rpc.on("drop")
    async def on_drop(event: Event, data: Point) -> list[str]:
        return []

    @rpc.on("wave")
    async def on_wave(event: Event, data: Options | None = None) -> None:
        return None

    @rpc.on("ping")
    async def on_ping(event: Event) -> None:
        return None

    return rpc


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in entries}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openrpc_document(endpoint())


def test_the_document_is_valid_openrpc(doc: dict[str, Any]) -> None:
    assert doc["openrpc"] == "1.3.2"
    assert doc["info"] == {"title": "shapes", "version": "2.1.0"}
    assert_valid_openrpc(doc)


def test_the_meta_schema_refuses_a_broken_document(doc: dict[str, Any]) -> None:
    # The validation has teeth: a bad paramStructure, or a schema of an unknown type.
    broken = json.loads(json.dumps(doc))
    broken["methods"][0]["paramStructure"] = "sideways"
    assert list(_validator().iter_errors(broken))
    broken = json.loads(json.dumps(doc))
    broken["methods"][0]["params"][0]["schema"] = {"type": "vector"}
    assert list(_validator().iter_errors(broken))


def test_only_the_apps_methods_are_listed(doc: dict[str, Any]) -> None:
    names = [m["name"] for m in doc["methods"]]
    assert names == ["move", "tag", "paint", "ticks", "words", "loose", "secret", "named"]
    assert not [n for n in names if n.startswith("rpc.")]


def test_optional_parameters_carry_their_defaults(doc: dict[str, Any]) -> None:
    move = by_name(doc["methods"])["move"]
    assert move["paramStructure"] == "either"
    assert move["description"] == "Move a point."
    assert move["params"] == [
        {"name": "p", "required": True, "schema": {"$ref": "#/components/schemas/Point"}},
        {"name": "dx", "required": True, "schema": {"type": "number"}},
        {"name": "dy", "required": False, "schema": {"type": "number", "default": 1.5}},
        {
            "name": "label",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
    ]
    assert move["result"] == {"name": "result", "schema": {"$ref": "#/components/schemas/Point"}}


def test_dataclasses_structs_and_typeddicts_are_components(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert set(schemas) == {"Point", "Label", "Box", "Options"}
    assert schemas["Point"]["properties"] == {
        "x": {"type": "number"},
        "y": {"type": "number", "default": 0.0},
    }
    assert schemas["Point"]["required"] == ["x"]
    assert schemas["Label"]["properties"]["at"] == {"$ref": "#/components/schemas/Point"}
    assert schemas["Options"]["properties"]["colour"] == {"enum": ["blue", "red"]}
    paint = by_name(doc["methods"])["paint"]
    assert paint["result"]["schema"] == {"type": "null"}


def test_injected_parameters_are_left_out(doc: dict[str, Any]) -> None:
    tag = by_name(doc["methods"])["tag"]
    assert [p["name"] for p in tag["params"]] == ["label"]
    drop = by_name(doc["x-gobstopper-events"])["drop"]
    assert [p["name"] for p in drop["params"]] == ["data"]  # not the Event


def test_a_stream_gives_the_schema_of_one_item(doc: dict[str, Any]) -> None:
    methods = by_name(doc["methods"])
    assert methods["ticks"]["x-gobstopper-stream"] is True
    assert methods["ticks"]["result"] == {
        "name": "item",
        "schema": {"$ref": "#/components/schemas/Point"},
    }
    assert methods["words"]["result"]["schema"] == {"type": "string"}
    assert "x-gobstopper-stream" not in methods["move"]


def test_what_has_no_hint_or_no_schema_is_anything(doc: dict[str, Any]) -> None:
    methods = by_name(doc["methods"])
    assert methods["loose"]["params"] == [
        {"name": "a", "required": True, "schema": {}},
        {"name": "b", "required": False, "schema": {"default": 2}},
    ]
    assert methods["loose"]["result"]["schema"] == {}
    assert methods["secret"]["result"]["schema"] == {}


def test_keyword_only_parameters_are_by_name(doc: dict[str, Any]) -> None:
    assert by_name(doc["methods"])["named"]["paramStructure"] == "by-name"


def test_events_list_their_data_and_acknowledgement(doc: dict[str, Any]) -> None:
    events = by_name(doc["x-gobstopper-events"])
    assert list(events) == ["drop", "wave", "ping"]
    assert events["drop"]["params"] == [
        {"name": "data", "required": True, "schema": {"$ref": "#/components/schemas/Point"}}
    ]
    assert events["drop"]["result"] == {
        "name": "result",
        "schema": {"type": "array", "items": {"type": "string"}},
    }
    assert "result" not in events["wave"]  # returns None: no acknowledgement
    # The data is validated even when absent (null): required, its default unused.
    assert events["wave"]["params"] == [
        {
            "name": "data",
            "required": True,
            "schema": {"anyOf": [{"$ref": "#/components/schemas/Options"}, {"type": "null"}]},
        }
    ]
    assert events["ping"]["params"] == []
    assert "paramStructure" not in events["drop"]  # the data is the whole of params


def test_an_endpoint_without_events_has_an_empty_list_of_them() -> None:
    rpc = RPC()

    @rpc.method()
    async def one() -> int:
        return 1

    doc = openrpc_document(rpc)
    assert doc["x-gobstopper-events"] == []
    assert doc["components"] == {"schemas": {}}
    assert doc["info"] == {"title": "gobstopper", "version": "0.0.0"}
    assert_valid_openrpc(doc)


def test_anything_but_an_endpoint_is_refused() -> None:
    with pytest.raises(TypeError, match="not an RPC endpoint"):
        openrpc_document(42)


async def test_rpc_discover_answers_the_document() -> None:
    rpc = endpoint()
    async with served(rpc) as peer:
        answer = await peer.call("rpc.discover")
        assert answer["result"] == json.loads(json.dumps(openrpc_document(rpc)))

        @rpc.method()
        async def later() -> int:
            return 1

        answer = await peer.call("rpc.discover", id=2)
        assert "later" in [m["name"] for m in answer["result"]["methods"]]
        answer = await peer.call("rpc.discover", {"verbose": True}, id=3)
        assert answer["error"]["code"] == -32602
        rpc.discovery.public = False
        answer = await peer.call("rpc.discover", id=4)
        assert answer["error"] == {
            "code": -32601,
            "message": "Method not found",
            "data": "rpc.discover",
        }


def test_the_checked_in_document_of_the_example_is_current() -> None:
    from examples.rpc import rpc

    current = json.loads(json.dumps(openrpc_document(rpc)))
    checked_in = json.loads((ROOT / "docs" / "openrpc.json").read_text())
    assert checked_in == current, f"docs/openrpc.json is out of date: run {REGENERATE}"
    assert_valid_openrpc(checked_in)


# -- awkward signatures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def awkward() -> dict[str, dict[str, Any]]:
    from tests.apps.awkward_rpc import rpc

    doc = openrpc_document(rpc)
    assert_valid_openrpc(doc)
    return by_name(doc["methods"])


def test_a_default_that_is_not_of_its_type_is_left_out(awkward: dict[str, Any]) -> None:
    # x: int = None: a client sending the published default would be refused; left out,
    # the parameter is still optional and the server uses its default.
    assert awkward["implicit"]["params"] == [
        {"name": "x", "required": False, "schema": {"type": "integer"}}
    ]
    # inf: JSON has no word for it (it would be written null).
    assert awkward["far"]["params"] == [
        {"name": "x", "required": False, "schema": {"type": "number"}}
    ]
    # A tuple default in its JSON form, as the document's JSON file says it.
    assert awkward["pair"]["params"][0]["schema"]["default"] == [1, "a"]


def test_keyword_only_parameters_of_a_by_position_method_are_left_out(
    awkward: dict[str, Any],
) -> None:
    # mixed(a, /, b=1, *, c=2): a request by name cannot pass a, one by position c.
    assert awkward["mixed"]["paramStructure"] == "by-position"
    assert [p["name"] for p in awkward["mixed"]["params"]] == ["a", "b"]
    assert awkward["kwmix"]["paramStructure"] == "by-name"


async def test_a_client_sending_the_documented_defaults_is_answered(
    awkward: dict[str, Any],
) -> None:
    # What a conforming client may send: every parameter listed, a default where one is
    # published, as paramStructure says (by position where it allows).
    from tests.apps.awkward_rpc import rpc

    sample = {"integer": 7}
    async with served(rpc) as peer:
        for n, (name, method) in enumerate(awkward.items()):
            values = {
                p["name"]: p["schema"]["default"]
                if "default" in p["schema"]
                else sample[p["schema"]["type"]]
                for p in method["params"]
                if p["required"] or "default" in p["schema"]
            }
            params: Any = values if method["paramStructure"] == "by-name" else list(values.values())
            answer = await peer.call(name, params, id=n)
            assert "result" in answer, (name, params, answer)


@dataclass
class Holder:
    pair: tuple[int, str]
    scale: float = float("nan")


def test_tuples_are_written_as_draft_07_says_them() -> None:
    rpc = RPC()

    @rpc.method()
    async def hold(h: Holder) -> tuple[int, str]:
        return h.pair

    doc = openrpc_document(rpc)
    [method] = doc["methods"]
    result = method["result"]["schema"]
    assert "prefixItems" not in result
    assert result["items"] == [{"type": "integer"}, {"type": "string"}]
    assert result["additionalItems"] is False
    validator = jsonschema.Draft7Validator(result)
    assert validator.is_valid([1, "a"])
    assert not validator.is_valid(["a", 1])
    assert not validator.is_valid([1, "a", 2])
    # In the components too, through a $ref.
    param = {**method["params"][0]["schema"], "components": doc["components"]}
    validator = jsonschema.Draft7Validator(param)
    assert validator.is_valid({"pair": [1, "a"]})
    assert not validator.is_valid({"pair": [1, "a", 2]})
    # A field's default JSON cannot carry (nan) is left out of the component.
    assert "default" not in doc["components"]["schemas"]["Holder"]["properties"]["scale"]
    assert_valid_openrpc(doc)


def test_a_method_no_request_can_call_is_refused() -> None:
    # Positional-only parameters are passed by position, a required keyword-only one by
    # name: no request does both, and no document could describe the call.
    rpc = RPC()
    with pytest.raises(TypeError, match="'stuck': no request can call it: positional-only 'a'"):

        @rpc.method()
        async def stuck(a: int, /, *, b: int) -> int:
            return a + b
