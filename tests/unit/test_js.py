"""The unit tests of the browser client, gobstopper.js (``tests/js/*.test.mjs``, Node's
own test runner, no browser), run from pytest; and the msgpack vectors they check it
against are msgspec's, as installed."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from .node_tools import ROOT, require_node

JS_TESTS = ROOT / "tests" / "js"


def test_node_unit_tests_of_gobstopper_js_pass() -> None:
    node = require_node()
    run = subprocess.run(
        [node, "--test", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed = [line for line in run.stdout.splitlines() if line.startswith("not ok")]
    assert run.returncode == 0, "\n".join(failed) + "\n" + run.stdout[-4000:] + run.stderr
    assert "# fail 0" in run.stdout
    assert "# pass 0\n" not in run.stdout  # tests ran


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
