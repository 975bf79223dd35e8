"""The distribution's name, and the install commands the project shows or prints: each
installs this project (from a checkout, or as ``gobstopper-rt``), never PyPI's
``gobstopper``, which is another project. ``.ci/newcomer`` runs the README's commands."""

from __future__ import annotations

import re
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

import gobstopper
import gobstopper.messages
import gobstopper.testing
from gobstopper import ConfigError
from gobstopper._util import lazy_exports
from gobstopper.brokers import check_broker_url

ROOT = Path(__file__).resolve().parents[2]
_PIP_INSTALL = re.compile(r"pip install\b([^`\n]*)")
# "gobstopper" as a requirement of its own: not a path ending in it, not gobstopper-rt.
_PYPI_GOBSTOPPER = re.compile(r"(?<![\w/.~-])['\"]?gobstopper(?!-rt)(?=[\[\s'\"]|$)")


def pypi_gobstopper_installs(text: str) -> list[str]:
    """The ``pip install`` commands in ``text`` that would fetch PyPI's ``gobstopper``."""
    return [
        command.group(0)
        for command in _PIP_INSTALL.finditer(text)
        if _PYPI_GOBSTOPPER.search(command.group(1))
    ]


def test_the_check_tells_our_installs_from_pypis_gobstopper() -> None:
    assert pypi_gobstopper_installs("pip install 'gobstopper[redis]'")
    assert pypi_gobstopper_installs("run `pip install gobstopper` first")
    assert pypi_gobstopper_installs('pip install -U "gobstopper[client]"')
    for ours in (
        "pip install -e '.[redis]'",
        "pip install -e ~/src/gobstopper'[redis]'",
        "pip install --no-deps 'gobstopper-rt @ file:///home/me/src/gobstopper'",
        "pip install websockets",
    ):
        assert pypi_gobstopper_installs(ours) == [], ours


def test_no_install_command_fetches_pypis_gobstopper() -> None:
    files = [ROOT / "README.md", ROOT / "tox.ini", ROOT / ".ci" / "run"]
    files += sorted((ROOT / "docs").glob("*.md"))
    for folder in ("gobstopper", "examples", "tests", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    found = {
        str(path.relative_to(ROOT)): commands
        for path in files
        if path != Path(__file__).resolve()  # this file shows the bad forms on purpose
        if (commands := pypi_gobstopper_installs(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_distribution_is_gobstopper_rt() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = pyproject.split("[project]", 1)[1]
    assert re.findall(r'^name = "(.+)"$', project, re.M)[:1] == ["gobstopper-rt"]
    # An extra that includes others names the distribution itself.
    assert '"gobstopper[' not in pyproject
    assert '"gobstopper-rt[test,lint,docs]"' in pyproject


@pytest.mark.parametrize(
    ("url", "module", "hint", "direct"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "pip install -e '.[redis]'", "pip install redis"),
        ("nats://127.0.0.1:4222", "nats", "pip install -e '.[nats]'", "pip install nats-py"),
    ],
)
def test_a_broker_without_its_client_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, hint: str, direct: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails
    monkeypatch.setitem(sys.modules, f"{module}.asyncio", None)
    with pytest.raises(ConfigError) as raised:
        check_broker_url(url)
    assert hint in str(raised.value) and direct in str(raised.value)
    assert pypi_gobstopper_installs(str(raised.value)) == []


def test_dir_lists_no_future_import() -> None:
    for module in (gobstopper, gobstopper.messages, gobstopper.testing):
        assert "annotations" not in dir(module), module.__name__
    namespace = {"__all__": ["App"], "__doc__": None, "annotations": object()}
    _, dir_ = lazy_exports("package", namespace, {"App": ".app"})
    assert dir_() == ["App", "__all__", "__doc__"]


def test_the_api_page_names_import_from_where_it_shows_them() -> None:
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    top_level = re.findall(r"^::: gobstopper\.(\w+)$", page, re.M)
    assert top_level
    for name in top_level:  # a public name of the package, or one of its modules
        assert name in gobstopper.__all__ or find_spec(f"gobstopper.{name}"), name
    assert "Client" not in gobstopper.__all__  # from gobstopper.client, as the page says
    assert "::: gobstopper.client.Client" in page
    assert "from gobstopper.client import Client" in page
