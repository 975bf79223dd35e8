"""gobstopper.d.ts, the TypeScript types of the browser client: it declares what
gobstopper.js exports, with the protocol's constants; code using it as the docs show
type-checks with ``tsc --strict``, and so does a stub generated from an OpenRPC document.

tsc comes from npm (``.ci/run``: ``npm install --no-save --prefix .ci/node
typescript@5``); without it these tests skip, except in CI, where they fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from gobstopper.codegen.typescript import typescript_stub
from gobstopper.messages import protocol
from gobstopper.messages.static import CLIENT_JS

from .node_tools import ROOT, require_tsc

DTS = CLIENT_JS.with_name("gobstopper.d.ts")
TS = ROOT / "tests" / "ts"


def test_the_declarations_are_what_the_script_exports() -> None:
    source = CLIENT_JS.read_text()
    found = re.search(r"const api = \{(.*?)\};", source, re.S)
    assert found
    exported = set(re.findall(r"\w+", found.group(1)))
    declared = set(re.findall(r"^export (?:class|const|function) (\w+)", DTS.read_text(), re.M))
    assert declared == exported


def test_the_declared_constants_are_the_protocols() -> None:
    block = re.search(r"export const RPC: \{\n(.*?)\n\};", DTS.read_text(), re.S)
    assert block
    entries = re.findall(r"readonly (\w+): (\"[^\"]*\"|-?\d+);", block.group(1))
    assert len(entries) == len(block.group(1).splitlines())
    for name, value in entries:
        assert getattr(protocol, name) == (value.strip('"') if value[0] == '"' else int(value))


def tsc(files: list[Path], tmp_path: Path, **options: object) -> None:
    """Type-check ``files`` with ``tsc --strict --noEmit`` (no @types, no other file)."""
    config = {
        "compilerOptions": {
            "target": "es2022",
            "lib": ["es2022", "dom"],
            "module": "es2022",
            "moduleResolution": "bundler",
            "types": [],
            **options,
        },
        "files": [str(f) for f in files],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    command = [require_tsc(), "-p", str(tmp_path / "tsconfig.json"), "--strict", "--noEmit"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_documented_uses_type_check(tmp_path: Path) -> None:
    """tests/ts/browser_client.ts: the docs' uses of the global ``Gobstopper``, and misuses
    it must refuse."""
    tsc([TS / "browser_client.ts"], tmp_path)


def test_a_generated_stub_type_checks_against_the_declarations(tmp_path: Path) -> None:
    """A stub of tests/ts/openrpc.json, used by tests/ts/use_stub.ts as the docs show
    (with misuses it must refuse)."""
    doc = json.loads((TS / "openrpc.json").read_text())
    (tmp_path / "api.ts").write_text(typescript_stub(doc))
    shutil.copy(DTS, tmp_path / "gobstopper.d.ts")
    shutil.copy(TS / "use_stub.ts", tmp_path / "use_stub.ts")
    tsc([tmp_path / "use_stub.ts"], tmp_path, allowUmdGlobalAccess=True)


def test_the_docs_example_of_a_stub_type_checks(tmp_path: Path) -> None:
    """docs/browser-client.md's use of the stub of tests/ts/openrpc.json, as written."""
    docs = (ROOT / "docs" / "browser-client.md").read_text()
    blocks = re.findall(r"```typescript\n(.*?)```", docs, re.S)
    example = [b for b in blocks if 'from "./api"' in b]
    assert len(example) == 1
    doc = json.loads((TS / "openrpc.json").read_text())
    (tmp_path / "api.ts").write_text(typescript_stub(doc))
    shutil.copy(DTS, tmp_path / "gobstopper.d.ts")
    (tmp_path / "example.ts").write_text(example[0])
    tsc([tmp_path / "example.ts"], tmp_path, allowUmdGlobalAccess=True)


EDGES = {
    "openrpc": "1.3.2",
    "info": {"title": "edge */ cases\n", "version": "1"},
    "methods": [
        {
            "name": "keep",
            "params": [
                {"name": "p", "required": True, "schema": {"$ref": "#/components/schemas/Promise"}}
            ],
            "result": {"name": "result", "schema": {"$ref": "#/components/schemas/Date"}},
        }
    ],
    "components": {
        "schemas": {
            "Promise": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "Date": {"title": "Date", "enum": ["today", "tomorrow"]},
            "Color": {"title": "Color", "enum": ["red", "blue"]},
        }
    },
    "x-gobstopper-events": [
        {"name": name, "params": [{"name": "data", "required": True, "schema": schema}]}
        for name, schema in [
            ("paint", {"$ref": "#/components/schemas/Color"}),
            ("maybe", {"anyOf": [{"type": "string"}, {"type": "null"}]}),
            ("either", {"anyOf": [{"$ref": "#/components/schemas/Promise"}, {"type": "string"}]}),
        ]
    ],
}

USE_EDGES = """\
/// <reference path="./gobstopper.d.ts" />
import { EdgeCasesApi, type Promise_, type Date_ } from "./api";

export async function use(api: EdgeCasesApi): Promise<void> {
  const p: Promise_ = { a: 1 };
  const when: Date_ = await api.keep(p);
  const now: Date = new Date(); // TypeScript's own, not hidden by the schema
  await api.emit.either({ a: 2 });
  // @ts-expect-error: a string is not params
  void api.emit.either("x");
  // @ts-expect-error: paint's data is a string: it cannot be sent
  void api.emit.paint("red");
  console.log(when, now);
}
"""


def test_a_stub_with_awkward_names_and_event_data_type_checks(tmp_path: Path) -> None:
    """Schemas named like TypeScript's own types, event data that is a $ref to an enum or
    a union with primitives, a title that would end a comment."""
    (tmp_path / "api.ts").write_text(typescript_stub(EDGES))
    shutil.copy(DTS, tmp_path / "gobstopper.d.ts")
    (tmp_path / "use.ts").write_text(USE_EDGES)
    tsc([tmp_path / "use.ts"], tmp_path, allowUmdGlobalAccess=True)
