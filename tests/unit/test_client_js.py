"""The browser client speaks the same protocol as the server: its ``RPC`` constants equal
``gobstopper/messages/protocol.py``'s, and no name or code is written anywhere else."""

from __future__ import annotations

import json
import re

from gobstopper.messages import protocol
from gobstopper.messages.static import CLIENT_JS

SOURCE = CLIENT_JS.read_text()
_OBJECT = re.compile(r"const RPC = Object\.freeze\(\{\n(.*?)\n  \}\);\n", re.S)
_ENTRY = re.compile(r"^\s*([A-Z_]+): (\"[^\"]*\"|-?\d+),$")


def constants() -> dict[str, object]:
    found = _OBJECT.search(SOURCE)
    assert found, "no RPC constants object in gobstopper.js"
    entries: dict[str, object] = {}
    for line in found.group(1).splitlines():
        if line.strip().startswith("//"):
            continue
        entry = _ENTRY.match(line)
        assert entry, f"not a constant: {line!r}"
        entries[entry.group(1)] = json.loads(entry.group(2))
    return entries


def test_every_constant_equals_the_protocols() -> None:
    js = constants()
    for name, value in js.items():
        assert getattr(protocol, name) == value, name
    names = {"VERSION", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "CANCEL", "INFO", "HISTORY"}
    names |= {"PRESENCE", "REFRESH", "PRESENCE_DIFF", "REFRESH_DUE", "CLOSING_EVENT"}
    names |= {"MESSAGE", "EVENT", "STREAM"} | {code.name for code in protocol.ErrorCode}
    assert set(js) == names


def test_no_name_or_code_outside_the_constants() -> None:
    found = _OBJECT.search(SOURCE)
    assert found
    rest = SOURCE[: found.start()] + SOURCE[found.end() :]
    assert not re.findall(r"[\"'`]rpc\.", rest)
    assert not re.findall(r"-32[0-9]{3}\b", rest)
    assert not re.findall(r"[\"'`]2\.0[\"'`]", rest)
