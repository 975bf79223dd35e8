"""Node.js and TypeScript for the tests of gobstopper.js, gobstopper.d.ts and the
TypeScript stubs: found on PATH (tsc also where ``.ci/run`` installs it, ``.ci/node``).
Missing, a test skips with the reason, except in CI (``CI`` set), where it fails:
``.ci/run`` installs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
#: Where `.ci/run` installs TypeScript: npm install --prefix .ci/node typescript@5
TSC_LOCAL = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "tsc"
#: The oldest Node the tests run on: ``node --test FILE...`` with ``--test-reporter``
#: (18.15), structuredClone and Array.prototype.at.
NODE_MIN = (18, 15)


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def node_version(text: str) -> tuple[int, int]:
    """(major, minor) of what ``node --version`` printed ("v20.11.1")."""
    found = re.fullmatch(r"v(\d+)\.(\d+)\.\d+\S*", text.strip())
    if found is None:
        raise ValueError(f"not a Node version: {text!r}")
    return int(found[1]), int(found[2])


def require_node() -> str:
    """The path of ``node``, version :data:`NODE_MIN` or later (checked)."""
    node = shutil.which("node")
    if node is None:
        _missing("node is missing (apt-get install nodejs npm)")
    assert node is not None
    printed = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    version = node_version(printed)
    if version < NODE_MIN:
        wanted = ".".join(map(str, NODE_MIN))
        _missing(f"node {printed.strip()} is too old: the tests need {wanted} or later")
    return node


def require_tsc() -> str:
    """The path of TypeScript's ``tsc`` (it runs on node)."""
    require_node()
    tsc = str(TSC_LOCAL) if TSC_LOCAL.exists() else shutil.which("tsc")
    if tsc is None:
        _missing("tsc is missing (npm install --no-save --prefix .ci/node typescript@5)")
    assert tsc is not None
    return tsc
