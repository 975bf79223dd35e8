"""Typed clients from OpenRPC documents (``gobstopper.codegen``), and the command line
that writes documents and clients. The generated modules are imported and their
methods called with the client's ``call``/``stream``/``emit`` recorded: what goes on
the wire. ``tests/integration/test_openrpc_stubs.py`` type-checks them with mypy and
uses one against a real server."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gobstopper.__main__ import main
from gobstopper.codegen import load_document, python_stub, stub
from gobstopper.messages.openrpc import openrpc_document

ROOT = Path(__file__).resolve().parents[2]

#: A document with what the example has not: names Python cannot take as they are,
#: optional parameters without a default, each parameter structure, every kind of
#: component.
RICH: dict[str, Any] = {
    "openrpc": "1.3.2",
    "info": {"title": "odd names", "version": "1"},
    "methods": [
        {
            "name": "chat.send",
            "paramStructure": "by-name",
            "params": [
                {"name": "from", "required": True, "schema": {"type": "string"}},
                {"name": "method", "required": False, "schema": {"type": "string"}},
                {"name": "params", "required": False, "schema": {"type": "integer"}},
            ],
            "result": {"name": "result", "schema": {"$ref": "#/components/schemas/Message"}},
        },
        {
            "name": "close",
            "paramStructure": "either",
            "params": [
                {"name": "code", "required": True, "schema": {"type": "integer"}},
                {"name": "why", "required": False, "schema": {"type": "string"}},
            ],
            "result": {"name": "result", "schema": {"type": "boolean"}},
        },
        {
            "name": "pick",
            "paramStructure": "by-position",
            "params": [
                {"name": "mode", "required": True, "schema": {"enum": ["a", "b", None]}},
                {"name": "kind", "required": False, "schema": {"const": 3, "default": 3}},
                {
                    "name": "tree",
                    "required": False,
                    "schema": {"$ref": "#/components/schemas/Tree"},
                },
            ],
            "result": {"name": "result", "schema": {"$ref": "#/components/schemas/Pair"}},
        },
        {
            "name": "feed",
            "description": 'Lines ending in "quotes"',
            "params": [],
            "result": {"name": "item", "schema": {"type": ["string", "null"]}},
            "x-gobstopper-stream": True,
        },
        {
            "name": "anything",
            "description": 'A path: C:\\new\nthen """three quotes""" and "one"',
            "params": [{"name": "x", "schema": {}}],
        },
    ],
    "components": {
        "schemas": {
            "Message": {
                "description": 'A "message"',
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "text": {"type": "string"},
                    "reply-to": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["id", "text"],
            },
            "Tree": {
                "type": "object",
                "properties": {
                    "value": {"type": "number"},
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/Tree"}},
                },
                "required": ["value"],
            },
            "Pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
            "Flags": {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": []},
        }
    },
    "x-gobstopper-events": [
        {"name": "typing", "params": [{"name": "ack", "required": True, "schema": {}}]},
        {
            "name": "join",
            "params": [{"name": "data", "required": True, "schema": {"type": "object"}}],
            "result": {"name": "result", "schema": {"type": "array", "items": {"type": "string"}}},
        },
    ],
}


def load(source: str, tmp_path: Path, name: str = "stub") -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """Stands in for ``Client``'s wire methods: records what a stub method sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(("call", method, args, kwargs))
        return "answer"

    async def stream(self, method: str, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.sent.append(("stream", method, args, kwargs))
        yield "item"

    async def emit(self, event: str, data: Any = None, *, ack: bool = False) -> Any:
        self.sent.append(("emit", event, data, ack))
        return ["member"] if ack else None


def recording(cls: type) -> Any:
    """An instance of the generated client whose wire methods are a ``Recorder``'s."""
    recorder = Recorder()
    instance = object.__new__(cls)
    for name in ("call", "stream", "emit"):
        setattr(instance, name, getattr(recorder, name))
    instance.sent = recorder.sent
    return instance


def test_the_example_stub_has_the_servers_signatures(tmp_path: Path) -> None:
    module = load(stub(load_document("examples.rpc:rpc"), "python"), tmp_path)
    cls = module.GobstopperExampleClient
    assert str(inspect.signature(cls.add)) == "(self, a: 'float', b: 'float') -> 'float'"
    assert (
        str(inspect.signature(cls.count))
        == "(self, n: 'int', delay: 'float' = 0.0) -> 'AsyncIterator[int]'"
    )
    assert str(inspect.signature(cls.emit_join)) == "(self, data: 'Room') -> 'list[str]'"
    assert (
        str(inspect.signature(cls.emit_say))
        == "(self, data: 'Say', *, ack: 'bool' = False) -> 'None'"
    )
    assert module.Room.__required_keys__ == frozenset({"room"})
    assert "whoami" in vars(cls) and "ws" not in str(inspect.signature(cls.whoami))
    from gobstopper.client import Client

    assert issubclass(cls, Client)


async def test_stub_methods_send_what_the_server_takes(tmp_path: Path) -> None:
    module = load(python_stub(RICH), tmp_path)
    client = recording(module.OddNamesClient)
    # Keyword and non-identifier names are renamed; the wire names are kept.
    assert await client.chat_send(from_="ann") == "answer"
    await client.chat_send(from_="ann", method="m", params_=2)
    assert client.sent[:2] == [
        ("call", "chat.send", (), {"from": "ann"}),
        ("call", "chat.send", (), {"from": "ann", "method": "m", "params": 2}),
    ]
    client.sent.clear()
    # ``close`` is the client's own: the server's method is close_. A parameter left
    # out is absent (by name), not null; by position, only after the last one given.
    await client.close_(1000)
    await client.close_(1000, "bye")
    await client.pick("a")
    await client.pick(None, 3, {"value": 1.0})
    await client.pick(None)
    assert client.sent == [
        ("call", "close", (), {"code": 1000}),
        ("call", "close", (), {"code": 1000, "why": "bye"}),
        ("call", "pick", ("a", 3), {}),
        ("call", "pick", (None, 3, {"value": 1.0}), {}),
        ("call", "pick", (None, 3), {}),
    ]
    client.sent.clear()
    assert [item async for item in client.feed()] == ["item"]
    await client.emit_typing(1)
    await client.emit_typing(2, ack=True)
    assert await client.emit_join({"room": "x"}) == ["member"]
    assert client.sent == [
        ("stream", "feed", (), {}),
        ("emit", "typing", 1, False),
        ("emit", "typing", 2, True),
        ("emit", "join", {"room": "x"}, True),
    ]


def test_components_become_typeddicts_and_aliases(tmp_path: Path) -> None:
    source = python_stub(RICH)
    module = load(source, tmp_path)
    assert module.Message.__required_keys__ == frozenset({"id", "text"})
    assert module.Message.__optional_keys__ == frozenset({"reply-to"})
    assert module.Tree.__required_keys__ == frozenset({"value"})
    assert module.Tree.__optional_keys__ == frozenset({"children"})
    assert module.Flags.__optional_keys__ == frozenset({"on"})
    assert 'Pair: TypeAlias = "tuple[str, int]"' in source
    assert 'mode: Literal["a", "b"] | None' in source
    assert "def feed(self) -> AsyncIterator[str | None]:" in source
    assert "async def anything(self, x: Any = None) -> Any:" in source


def test_descriptions_become_docstrings_whatever_they_hold(tmp_path: Path) -> None:
    module = load(python_stub(RICH), tmp_path)
    assert module.OddNamesClient.feed.__doc__ == 'Lines ending in "quotes"'
    assert inspect.getdoc(module.OddNamesClient.anything) == RICH["methods"][4]["description"]
    assert module.Message.__doc__ == 'A "message"'


def test_a_document_the_generator_cannot_read_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'methods' list"):
        python_stub({"openrpc": "1.3.2"})
    bad = {
        "methods": [{"name": "m", "params": [], "result": {"name": "r", "schema": {"$ref": "x"}}}]
    }
    with pytest.raises(ValueError, match="not one of #/components/schemas: 'x'"):
        python_stub(bad)


def test_typescript_comes_from_its_own_module(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    fake = types.ModuleType("gobstopper.codegen.typescript")
    fake.typescript_stub = lambda doc: seen.append(doc) or "// ts\n"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gobstopper.codegen.typescript", fake)
    assert stub(RICH, "typescript") == "// ts\n"
    assert seen == [RICH]


def test_a_missing_typescript_generator_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gobstopper.codegen.typescript", None)
    with pytest.raises(ValueError, match=r"gobstopper\.codegen\.typescript"):
        stub(RICH, "typescript")
    with pytest.raises(ValueError, match="unknown language 'cobol'"):
        stub(RICH, "cobol")


# -- the command line ------------------------------------------------------------------


def test_openrpc_writes_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["openrpc", "examples.rpc:rpc"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((ROOT / "docs" / "openrpc.json").read_text())
    out = tmp_path / "doc.json"
    assert main(["openrpc", "examples.rpc:app", "-o", str(out)]) == 0  # the app's one endpoint
    assert json.loads(out.read_text()) == printed


def test_stubs_from_a_module_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["stubs", "examples.rpc:rpc", "--lang", "python"]) == 0
    from_module = capsys.readouterr().out
    assert "class GobstopperExampleClient(Client):" in from_module
    out = tmp_path / "client.py"
    assert main(["stubs", "docs/openrpc.json", "--lang", "python", "-o", str(out)]) == 0
    assert out.read_text() == from_module


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["openrpc", "examples.nothing:rpc"], "'examples.nothing:rpc': cannot import"),
        (["openrpc", "examples.rpc:nothing"], "'examples.rpc' has no 'nothing'"),
        (["openrpc", "examples.rpc:add"], "'examples.rpc:add' is a function, not an RPC"),
        (["openrpc", "examples.rpc"], "'examples.rpc' is not module:attribute"),
        (["openrpc", "docs/openrpc.json"], "openrpc takes module:attribute, not a file"),
        (["stubs", "missing.json", "--lang", "python"], "'missing.json': cannot read it"),
        (["stubs", "mkdocs.yml.json", "--lang", "python"], "cannot read it"),
    ],
)
def test_a_bad_target_is_named_with_status_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_a_file_that_is_not_a_document_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.json"
    text.write_text("not json")
    data = tmp_path / "data.json"
    data.write_text('{"a": 1}')
    assert main(["stubs", str(text), "--lang", "python"]) == 2
    assert "notes.json': not JSON" in capsys.readouterr().err
    assert main(["stubs", str(data), "--lang", "python"]) == 2
    assert "data.json': not an OpenRPC document" in capsys.readouterr().err


def test_the_module_runs_as_a_command() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gobstopper", "openrpc", "examples.rpc:nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "python -m gobstopper openrpc: 'examples.rpc:nope'" in run.stderr


def test_python_stubs_without_the_client_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gobstopper.client", None)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[client\]'"):
        python_stub(RICH)


# -- awkward signatures and documents --------------------------------------------------


def awkward_stub() -> str:
    from tests.apps.awkward_rpc import rpc

    return python_stub(openrpc_document(rpc))


async def test_a_stub_of_awkward_signatures_calls_them_as_the_server_takes_them(
    tmp_path: Path,
) -> None:
    # A required keyword-only parameter after an optional one, a default not of its own
    # type (x: int = None), positional-only next to keyword-only, a tuple default, an inf
    # default: the stub compiles, and the server answers every call it makes.
    from gobstopper.testing import AsyncTestClient, RPCTestClient
    from tests.apps.awkward_rpc import app

    module = load(awkward_stub(), tmp_path, "awkward_client")
    typed = type("Typed", (module.AwkwardClient, RPCTestClient), {})
    async with AsyncTestClient(app) as client, typed(client, "/rpc", timeout=10) as rpc:
        assert await rpc.kwmix(b=2) == [1, 2]
        assert await rpc.kwmix(5, b=2) == [5, 2]
        assert await rpc.implicit() == "None"
        assert await rpc.implicit(3) == "3"
        assert await rpc.mixed(1) == [1, 1, 2]
        assert await rpc.mixed(1, 5) == [1, 5, 2]
        assert await rpc.pair() == [1, "a"]
        assert await rpc.pair((2, "b"), tail_=True) == [3, "b!"]
        assert await rpc.far() == "inf"
        assert await rpc.far(1.5) == "1.5"
    assert "def kwmix(self, a: int = 1, *, b: int) -> list[int]:" in inspect.getsource(module)


def test_a_document_and_its_json_give_the_same_stub() -> None:
    from tests.apps.awkward_rpc import rpc

    doc = openrpc_document(rpc)
    source = python_stub(doc)
    assert python_stub(json.loads(json.dumps(doc))) == source
    assert 't: tuple[int, str] = (1, "a")' in source  # a tuple default, as its type says


def test_openrpc_writes_json_whatever_the_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["openrpc", "tests.apps.awkward_rpc:rpc"]) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    doc = json.loads(capsys.readouterr().out, parse_constant=refuse)
    far = next(m for m in doc["methods"] if m["name"] == "far")
    assert far["params"] == [{"name": "x", "required": False, "schema": {"type": "number"}}]


def test_a_hostile_title_stays_text(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    title = f'x"""; open({str(marker)!r}, "w"); """ \\N{{oops}} \\x \x00 "'
    doc = {"openrpc": "1.3.2", "info": {"title": title, "version": '1"'}, "methods": []}
    module = load(python_stub(doc), tmp_path, "hostile")
    assert not marker.exists()
    assert module.__doc__.startswith(f'A typed client of {title} 1", from its OpenRPC')
    [name] = [n for n in module.__all__ if n.endswith("Client")]
    assert getattr(module, name).__doc__ == f'The methods, streams and events of {title} 1".'


def test_an_empty_version_is_left_out(tmp_path: Path) -> None:
    doc = {"info": {"title": "p5", "version": ""}, "methods": []}
    module = load(python_stub(doc), tmp_path, "p5")
    assert module.__doc__.startswith("A typed client of p5, from")
    assert module.P5Client.__doc__ == "The methods, streams and events of p5."


def test_a_component_named_as_the_client_is_renamed(tmp_path: Path) -> None:
    doc = {
        "info": {"title": "odd"},
        "methods": [
            {
                "name": "get",
                "params": [],
                "result": {"name": "r", "schema": {"$ref": "#/components/schemas/OddClient"}},
            }
        ],
        "components": {
            "schemas": {"OddClient": {"type": "object", "properties": {"a": {"type": "integer"}}}}
        },
    }
    module = load(python_stub(doc), tmp_path, "odd")
    from gobstopper.client import Client

    assert issubclass(module.OddClient, Client)
    assert module.OddClient_.__optional_keys__ == frozenset({"a"})
    assert str(inspect.signature(module.OddClient.get)) == "(self) -> 'OddClient_'"


def test_unions_name_each_type_once() -> None:
    maybe = {"anyOf": [{"type": ["integer", "null"]}, {"type": "null"}]}
    doc = {
        "methods": [
            {
                "name": "m",
                "paramStructure": "by-name",
                "params": [{"name": "x", "required": False, "schema": maybe}],
                "result": {"name": "r", "schema": {"enum": ["a | b", None], "type": "null"}},
            }
        ]
    }
    source = python_stub(doc)
    assert 'async def m(self, x: int | None = None) -> Literal["a | b"] | None:' in source


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"methods": [{"params": []}]}, "methods[0]: no 'name'"),
        ({"methods": ["m"]}, "methods[0] is not an object"),
        ({"methods": [{"name": "m", "params": {}}]}, "methods[0] ('m'): 'params' is not a list"),
        (
            {"methods": [{"name": "m", "params": [{"schema": {}}]}]},
            "methods[0] ('m'): params[0] is not an object with a 'name'",
        ),
        ({"methods": [], "x-gobstopper-events": [{}]}, "x-gobstopper-events[0]: no 'name'"),
        ({"methods": [], "components": {"schemas": []}}, "'components.schemas' is not an object"),
        ({"methods": [{"name": "m", "result": 1}]}, "methods[0] ('m'): 'result' is not an object"),
    ],
)
def test_a_malformed_document_is_named_with_status_2(
    doc: dict[str, Any], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    for lang in ("python", "typescript"):
        assert main(["stubs", str(path), "--lang", lang]) == 2
        err = capsys.readouterr().err
        assert f"broken.json': {problem}" in err, err
    with pytest.raises(ValueError, match=re.escape(problem)):
        python_stub(doc)


def test_typescript_reads_draft_07_tuples() -> None:
    from tests.apps.awkward_rpc import rpc

    source = stub(openrpc_document(rpc), "typescript")
    assert "pair(t?: [number, string], tail?: boolean): Promise<[number, string]>" in source
