from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gobstopper
import gobstopper.messages


def test_public_names_are_exported_and_exist() -> None:
    assert sorted(gobstopper.__all__) == sorted(set(gobstopper.__all__))
    for name in gobstopper.__all__:
        assert getattr(gobstopper, name) is not None, name
    expected = {
        "Gobstopper",
        "WebSocket",
        "CloseCode",
        "ConnectionClosed",
        "MessageTooBig",
        "Config",
    }
    assert expected <= set(gobstopper.__all__)


def test_dir_lists_the_public_names() -> None:
    assert set(gobstopper.__all__) <= set(dir(gobstopper))
    assert set(gobstopper.messages.__all__) <= set(dir(gobstopper.messages))
    for name in gobstopper.messages.__all__:
        assert getattr(gobstopper.messages, name) is not None, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    for module in (gobstopper, gobstopper.messages):
        with pytest.raises(AttributeError):
            getattr(module, "no_such_name")  # noqa: B009


def test_the_client_loads_no_server_module() -> None:
    code = (
        "import sys, gobstopper.client; "
        "print(sorted(m for m in sys.modules if m.startswith(('granian', 'gobstopper'))))"
    )
    root = Path(__file__).resolve().parents[2]  # this checkout's gobstopper, not another
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    loaded = ast.literal_eval(run.stdout)
    assert "gobstopper.client" in loaded and "gobstopper.messages.protocol" in loaded
    server = ("gobstopper.app", "gobstopper.manager", "gobstopper.websocket")
    server += ("gobstopper.transport", "gobstopper.brokers", "gobstopper.messages.rpc")
    for name in loaded:
        assert not name.startswith("granian"), name
        assert not name.startswith(server), name


def test_the_test_kit_exports_its_names_and_stays_out_of_the_top_level() -> None:
    import gobstopper.testing

    assert set(gobstopper.testing.__all__) <= set(dir(gobstopper.testing))
    for name in gobstopper.testing.__all__:
        assert getattr(gobstopper.testing, name) is not None, name
    assert "TestClient" not in gobstopper.__all__  # from gobstopper.testing only


def test_the_pytest_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, gobstopper.testing.plugin; "
        "print(sorted(m for m in sys.modules if m.startswith("
        "('granian', 'gobstopper', 'msgspec', 'websockets'))))"
    )
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    loaded = ast.literal_eval(run.stdout)
    assert "gobstopper.testing.plugin" in loaded
    assert set(loaded) <= {
        "gobstopper",
        "gobstopper._util",
        "gobstopper.errors",
        "gobstopper.testing",
        "gobstopper.testing.plugin",
    }, loaded
