"""Every sample of docs/testing.md, run as the test files it shows (each marked with
``<!-- file: NAME -->``), with the pytest configuration it recommends, in a pytest run of
their own with every warning an error: the page cannot drift from what works. The
README's test sample runs with them."""

from __future__ import annotations

import os
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "testing.md"
_FILE = re.compile(r"^<!-- file: (\S+) -->\n```\w+\n(.*?)^```", re.S | re.M)
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def files() -> dict[str, str]:
    found = dict(_FILE.findall(PAGE.read_text()))
    readme = [b for b in _PYTHON.findall((ROOT / "README.md").read_text()) if "testing" in b]
    assert len(readme) == 1, readme
    found["test_readme.py"] = readme[0]
    return found


def test_the_chat_test_is_under_ten_lines() -> None:
    lines = [line for line in files()["test_chat.py"].splitlines() if line.strip()]
    assert len(lines) < 10, lines


def test_the_samples_pass_as_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = files()
    assert {
        "pyproject.toml",
        "conftest.py",
        "test_chat.py",
        "test_server.py",
        "test_module_server.py",
    } <= set(samples)
    for name, text in samples.items():
        (pytester.path / name).write_text(text)
    args = ["-p", "no:cacheprovider", "-W", "error"]
    if not any(ep.value == "gobstopper.testing.plugin" for ep in entry_points(group="pytest11")):
        args += ["-p", "gobstopper.testing.plugin"]  # an install older than its entry point
    # The samples import the examples, as a project imports its own package.
    monkeypatch.setenv("PYTHONPATH", f"{pytester.path}{os.pathsep}{ROOT}")
    monkeypatch.chdir(ROOT)  # where the real server imports examples.chat from
    result = pytester.runpytest_subprocess(*args, str(pytester.path))
    outcomes = result.parseoutcomes()
    tests = sum(
        text.count("\ndef test_") + text.count("\nasync def test_") for text in samples.values()
    )
    assert outcomes == {"passed": tests + 1}, result.stdout.str()  # + the second interface
