"""Start and stop real servers on free ports of 127.0.0.1: the test kit's
(``gobstopper.testing.server``), run from the checkout's root, plus uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gobstopper.testing.server import (
    LiveServer as Server,
)
from gobstopper.testing.server import (
    free_port,
    granian_command,
    start_server,
    wait_listening,
)

__all__ = [
    "ROOT",
    "Server",
    "free_port",
    "granian_command",
    "server_fixture",
    "start",
    "uvicorn_command",
    "wait_listening",
]

ROOT = Path(__file__).resolve().parents[2]


def uvicorn_command(target: str) -> list[str]:
    """uvicorn on ``{port}`` (filled in by ``start``), with its default WebSocket side."""
    return [
        *(sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"),
        *("--no-access-log", target),
    ]


def start(
    target: str,
    interface: str,
    env: dict[str, str] | None = None,
    *,
    cwd: Path | None = None,
    **options: Any,
) -> Server:
    """``start_server`` from the checkout's root (where ``tests.apps`` and ``examples``
    are importable)."""
    return start_server(target, interface, env, cwd=cwd or ROOT, **options)


def server_fixture(target: str, doc: str, servers: tuple[str, ...] = ("rsgi", "asgi")) -> Any:
    """A module-scoped pytest fixture running ``target`` once per server: ``rsgi`` and
    ``asgi`` (granian's two interfaces), ``uvicorn`` (ASGI, written in Python)."""

    @pytest.fixture(scope="module", params=servers)
    def fixture(request: pytest.FixtureRequest) -> Iterator[Server]:
        if request.param == "uvicorn":
            server = start(target, "asgi", command=uvicorn_command(target))
            server.name = "uvicorn"
        else:
            server = start(target, request.param)
        yield server
        server.stop()

    fixture.__doc__ = doc
    return fixture
