"""gobstopper.d.ts, the TypeScript types of the browser client: it declares what
gobstopper.js exports, with the protocol's constants."""

from __future__ import annotations

import re

from gobstopper.messages import protocol
from gobstopper.messages.static import CLIENT_JS

DTS = CLIENT_JS.with_name("gobstopper.d.ts")


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
