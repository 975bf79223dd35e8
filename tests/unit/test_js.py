"""The unit tests of the browser client, gobstopper.js (``tests/js/*.test.mjs``, Node's
own test runner, no browser), run from pytest; and the msgpack vectors they check it
against are msgspec's, as installed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from .node_tools import ROOT, node_version, require_node

JS_TESTS = ROOT / "tests" / "js"


def node_test_command(node: str) -> list[str]:
    """``node --test`` over each test file by name (since Node 21 the arguments are globs,
    and a directory is not one), reporting TAP (since Node 23 the default is ``spec``
    even on a pipe)."""
    files = sorted(str(path.relative_to(ROOT)) for path in JS_TESTS.glob("*.test.mjs"))
    return [node, "--test", "--test-reporter=tap", *files]


def test_node_unit_tests_of_gobstopper_js_pass() -> None:
    node = require_node()
    command = node_test_command(node)
    assert len(command) > 4, "no tests/js/*.test.mjs"
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    failed = [line for line in run.stdout.splitlines() if line.lstrip().startswith("not ok")]
    # The exit code says it; the TAP summary only explains a failure, and shows that
    # tests ran.
    assert run.returncode == 0, "\n".join(failed) + "\n" + run.stdout[-4000:] + run.stderr
    passed = re.search(r"^# pass (\d+)$", run.stdout, re.MULTILINE)
    assert passed is not None and int(passed[1]) > 0, run.stdout[-2000:]


def test_the_node_test_command_names_each_test_file() -> None:
    command = node_test_command("node")
    assert command[:3] == ["node", "--test", "--test-reporter=tap"]
    assert command[3:] == sorted(command[3:])
    assert "tests/js/msgpack.test.mjs" in command
    assert all(arg.endswith(".test.mjs") for arg in command[3:])


def test_node_versions_are_read() -> None:
    assert node_version("v18.15.0\n") == (18, 15)
    assert node_version("v24.1.0") == (24, 1)
    assert node_version("v20.0.0-pre") == (20, 0)
    with pytest.raises(ValueError, match="not a Node version"):
        node_version("node 20")


def test_msgpack_vectors_are_msgspecs() -> None:
    """The checked-in vectors are what msgspec writes now (remake them if this fails: see
    ``tests/js/make_msgpack_vectors.py``)."""
    path = JS_TESTS / "make_msgpack_vectors.py"
    spec = importlib.util.spec_from_file_location("make_msgpack_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checked_in = Path(JS_TESTS / "msgpack-vectors.json").read_text(encoding="utf-8")
    assert module.vectors() == checked_in


def test_the_documented_command_is_the_one_that_works() -> None:
    """README and .ci/run show the form that works on Node 18.15 to 24 (not a directory)."""
    documented = "node --test --test-reporter=tap tests/js/*.test.mjs"
    for path in (ROOT / "README.md", ROOT / ".ci" / "run"):
        text = path.read_text()
        assert documented in text, path
        assert "node --test tests/js/" not in text, path
