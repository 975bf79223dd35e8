"""Every Python sample in the docs and the README compiles, and every sample that is a
whole program (it starts with its imports) runs: a renamed argument or a wrong import
in the docs fails here."""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import types
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


#: What the samples read from the environment, as their reader would have set it (they
#: fail at start-up without it rather than fall back on a secret written in the page).
SAMPLE_ENV = {"JWT_SECRET": "a docs sample secret of 32 bytes!"}


@pytest.mark.parametrize(("page", "line", "code"), WHOLE, ids=[f"{p}:{n}" for p, n, _ in WHOLE])
def test_whole_sample_runs(
    page: str, line: int, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    # A module of its own, as a real program has: dataclasses and type hints look it up.
    module = types.ModuleType(f"docs_sample_{line}")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, f"{page}:{line}", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


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


HANDLER_BODIES = [s for s in ALL if s not in WHOLE and not _standalone(s[2])]


@pytest.mark.parametrize(
    ("page", "line", "code"), HANDLER_BODIES, ids=[f"{p}:{n}" for p, n, _ in HANDLER_BODIES]
)
def test_handler_body_runs_against_a_connection(page: str, line: int, code: str) -> None:
    """Fragments that await stand for a handler's body: run them as one, on an accepted
    connection (a fake transport) that sends two messages and leaves once it has two
    answers, inside a manager where ``conn`` ("alice") and ``other_conn`` ("bob") are in
    the room "lobby"."""
    import asyncio
    import textwrap

    import gobstopper
    from gobstopper.transport.base import CLOSE, TEXT

    from .fake_transport import make

    async def run() -> None:
        ws, transport = make()
        other, other_transport = make()
        await ws.accept()
        await other.accept()
        ws.state.role = other.state.role = "user"
        manager = gobstopper.WebSocketManager(gobstopper.Config.load({}))
        conn, other_conn = manager.add(ws, "alice"), manager.add(other, "bob")
        for member in (conn, other_conn):
            await member.join("lobby")
        for message in ('{"n": 1}', "not json"):
            transport.push(TEXT, message)
        send_text = transport.send_text

        async def answer_then_leave(data: str) -> None:
            # The client leaves once it has its two answers: a loop ends as it would.
            await send_text(data)
            if len(transport.sent) == 2:
                transport.push(CLOSE, 1000)

        transport.send_text = answer_then_leave  # type: ignore[method-assign]
        namespace: dict[str, object] = {
            name: getattr(gobstopper, name) for name in gobstopper.__all__
        }
        body = "async def sample(ws, manager, conn, other_conn, data):\n"
        body += textwrap.indent(code, "    ")
        exec(compile(body, f"{page}:{line}", "exec"), namespace)
        sample = namespace["sample"]
        # The connection's end comes as ConnectionClosed, as a handler meets it.
        with contextlib.suppress(gobstopper.ConnectionClosed):
            await asyncio.wait_for(sample(ws, manager, conn, other_conn, {"n": 2}), 5)  # type: ignore[operator]
        if "manager." in code:
            # Every delivery mode of the rooms page: three reach each of the two.
            assert (len(transport.sent), len(other_transport.sent)) == (3, 3)
        else:
            assert len(transport.sent) == 2, transport.sent  # an answer per message

    asyncio.run(run())


# The tables of settings are rendered from their declarations; a page marks each one, with
# the names of the settings it shows when it does not show them all.
_SETTINGS_TABLE = re.compile(
    r"^(?P<head><!-- settings table(?:: (?P<names>[^>]*?))? -->)\n\n"
    r"(?P<table>.*?)\n<!-- end of settings table -->$",
    re.S | re.M,
)


def _settings_table(names: str | None) -> str:
    from gobstopper.settings import markdown_table

    return markdown_table(None if names is None else names.split())


def write_settings_tables() -> None:
    """Render every marked table afresh, after a setting changed:
    ``python -c "from tests.unit.test_docs import write_settings_tables as w; w()"``."""
    for page in PAGES:
        text = page.read_text()
        fresh = _SETTINGS_TABLE.sub(
            lambda m: m.group(0).replace(m.group("table"), _settings_table(m.group("names"))),
            text,
        )
        if fresh != text:
            page.write_text(fresh)


SETTINGS_TABLES = [
    (page.relative_to(ROOT).as_posix(), m.group("names"), m.group("table"))
    for page in PAGES
    for m in _SETTINGS_TABLE.finditer(page.read_text())
]


def test_the_reference_pages_have_the_whole_table() -> None:
    whole = {page for page, names, _ in SETTINGS_TABLES if names is None}
    assert {"README.md", "docs/configuration.md"} <= whole


@pytest.mark.parametrize(
    ("page", "names", "table"), SETTINGS_TABLES, ids=[p for p, _, _ in SETTINGS_TABLES]
)
def test_settings_table_matches_the_declarations(page: str, names: str | None, table: str) -> None:
    """Every variable, argument, default and meaning as declared in gobstopper/settings.py."""
    assert table == _settings_table(names), f"{page}: run {write_settings_tables.__doc__}"


def test_settings_are_documented_only_in_the_generated_tables() -> None:
    """A hand-written row for a variable would drift: it belongs in a marked table."""
    from gobstopper.settings import SETTINGS

    rows = tuple(f"| `{s.env}` {end}" for s in SETTINGS.values() for end in "|/")
    for page in PAGES:
        text = _SETTINGS_TABLE.sub("", page.read_text())
        stray = [line for line in text.splitlines() if line.startswith(rows)]
        assert not stray, (page.name, stray)
