"""The command a user runs for a typed TypeScript client of examples/rpc.py, end to end:
``python -m gobstopper stubs examples.rpc:rpc --lang typescript`` writes a module that
type-checks with ``tsc --strict`` against gobstopper.d.ts (tsc as in test_typescript)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .node_tools import ROOT
from .test_typescript import DTS, tsc


def test_the_example_apps_typescript_stub_type_checks(tmp_path: Path) -> None:
    stub = tmp_path / "api.ts"
    command = [sys.executable, "-m", "gobstopper", "stubs", "examples.rpc:rpc"]
    run = subprocess.run(
        [*command, "--lang", "typescript", "-o", str(stub)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    text = stub.read_text()
    # the example's own methods and events are there, typed
    assert "add(a: number, b: number): Promise<number>" in text
    assert "export interface Say" in text
    shutil.copy(DTS, tmp_path / "gobstopper.d.ts")
    tsc([stub], tmp_path, allowUmdGlobalAccess=True)
