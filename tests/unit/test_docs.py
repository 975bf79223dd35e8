"""Every Python sample in the docs and the README compiles, and every sample that is a
whole program (it starts with its imports) runs: a renamed argument or a wrong import
in the docs fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def samples() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((page.relative_to(ROOT).as_posix(), line, match.group(1)))
    return found


ALL = samples()
WHOLE = [s for s in ALL if s[2].lstrip().startswith(("from ", "import "))]


def test_the_docs_have_samples_to_check() -> None:
    assert len(ALL) >= 20 and len(WHOLE) >= 5, (len(ALL), len(WHOLE))


@pytest.mark.parametrize(("page", "line", "code"), ALL, ids=[f"{p}:{n}" for p, n, _ in ALL])
def test_sample_compiles(page: str, line: int, code: str) -> None:
    # Fragments may await at top level (they stand for a handler's body).
    compile(code, f"{page}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize(("page", "line", "code"), WHOLE, ids=[f"{p}:{n}" for p, n, _ in WHOLE])
def test_whole_sample_runs(page: str, line: int, code: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_sample_{line}"}
    exec(compile(code, f"{page}:{line}", "exec"), namespace)


def _standalone(code: str) -> bool:
    """Whether a fragment runs at module level (no top-level await)."""
    try:
        compile(code, "<sample>", "exec")
    except SyntaxError:
        return False
    return True


FRAGMENTS = [s for s in ALL if s not in WHOLE and _standalone(s[2])]


@pytest.mark.parametrize(
    ("page", "line", "code"), FRAGMENTS, ids=[f"{p}:{n}" for p, n, _ in FRAGMENTS]
)
def test_fragment_runs_next_to_an_app(page: str, line: int, code: str) -> None:
    """Fragments that register handlers or build an app run against a fresh app, with
    gobstopper's names in scope, as the page around them assumes."""
    import asyncio

    import gobstopper

    namespace: dict[str, object] = {name: getattr(gobstopper, name) for name in gobstopper.__all__}
    namespace.update(
        __name__=f"docs_fragment_{line}", asyncio=asyncio, app=gobstopper.Gobstopper(environ={})
    )
    exec(compile(code, f"{page}:{line}", "exec"), namespace)
