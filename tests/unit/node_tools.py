"""Node.js and TypeScript for the tests of gobstopper.js, gobstopper.d.ts and the
TypeScript stubs: found on PATH (tsc also where ``.ci/run`` installs it, ``.ci/node``).
Missing, a test skips with the reason, except in CI (``CI`` set), where it fails:
``.ci/run`` installs them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
#: Where `.ci/run` installs TypeScript: npm install --prefix .ci/node typescript@5
TSC_LOCAL = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "tsc"


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def require_node() -> str:
    """The path of ``node`` (version 20 or later, for ``node --test`` on a directory)."""
    node = shutil.which("node")
    if node is None:
        _missing("node is missing (apt-get install nodejs npm)")
    assert node is not None
    return node


def require_tsc() -> str:
    """The path of TypeScript's ``tsc`` (it runs on node)."""
    require_node()
    tsc = str(TSC_LOCAL) if TSC_LOCAL.exists() else shutil.which("tsc")
    if tsc is None:
        _missing("tsc is missing (npm install --no-save --prefix .ci/node typescript@5)")
    assert tsc is not None
    return tsc
