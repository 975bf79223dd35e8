"""gobstopper's pytest plugin, loaded by pytest through the ``pytest11`` entry point.

Fixtures (each documented in docs/testing.md):

* ``gobstopper_app``: the app under test. Define it in your tests (a fixture of that
  name returning your ``Gobstopper``); this default fails, saying so.
* ``gobstopper_client``: a ``TestClient`` of ``gobstopper_app``, entered (plain tests).
* ``gobstopper_async_client``: an ``AsyncTestClient`` of ``gobstopper_app``, entered
  (async tests; needs pytest-asyncio).
* ``gobstopper_target``: the app's import string (``"myapp.main:app"``) for the real
  server. Define it too; this default fails, saying so.
* ``gobstopper_server``: a ``LiveServer``: ``gobstopper_target`` under granian on a free
  port of 127.0.0.1, RSGI unless parametrised indirectly with ``"asgi"``.
* ``gobstopper_serve``: ``serve(target, interface="rsgi", **start_server_options)``
  starts more servers, all stopped after the test.

Importing this module stays light: besides pytest it loads only gobstopper's package
root, its errors module and ``gobstopper.testing``'s lazy index; the kit itself (the
clients, the server helper) is imported when a fixture runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .client import AsyncTestClient
    from .server import LiveServer
    from .sync import TestClient

__all__ = [
    "gobstopper_app",
    "gobstopper_async_client",
    "gobstopper_client",
    "gobstopper_serve",
    "gobstopper_server",
    "gobstopper_target",
]


@pytest.fixture
def gobstopper_app() -> Any:
    """The app under test: override this fixture in your tests."""
    pytest.fail(
        "define a fixture named gobstopper_app that returns your app, e.g.\n"
        "    @pytest.fixture\n"
        "    def gobstopper_app():\n"
        "        from myapp.main import app\n"
        "        return app",
        pytrace=False,
    )


@pytest.fixture
def gobstopper_client(gobstopper_app: Any) -> Iterator[TestClient]:
    """A ``TestClient`` of ``gobstopper_app``, started (its startup hooks run) and
    stopped after the test."""
    from .sync import TestClient

    with TestClient(gobstopper_app) as client:
        yield client


try:  # pytest-asyncio loads as a pytest plugin of its own: importing it here costs nothing
    import pytest_asyncio
except ImportError:  # only without pytest-asyncio

    @pytest.fixture
    def gobstopper_async_client() -> Any:
        """Needs pytest-asyncio."""
        pytest.fail(
            "gobstopper_async_client needs pytest-asyncio: pip install pytest-asyncio",
            pytrace=False,
        )

else:
    # One of two definitions, chosen by the import above.
    @pytest_asyncio.fixture
    async def gobstopper_async_client(  # type: ignore[misc]
        gobstopper_app: Any,
    ) -> AsyncIterator[AsyncTestClient]:
        """An ``AsyncTestClient`` of ``gobstopper_app``, started and stopped around the
        test, on the test's event loop."""
        from .client import AsyncTestClient

        async with AsyncTestClient(gobstopper_app) as client:
            yield client


@pytest.fixture
def gobstopper_target() -> str:
    """The app's import string for the real server: override this fixture."""
    pytest.fail(
        "define a fixture named gobstopper_target that returns your app's import string, "
        'e.g. "myapp.main:app"',
        pytrace=False,
    )


@pytest.fixture
def gobstopper_serve() -> Iterator[Callable[..., LiveServer]]:
    """``serve(target, interface="rsgi", **options)``: start ``target`` under granian on a
    free port (``options`` as ``start_server``'s); every server is stopped, with its
    whole process group, after the test."""
    from .server import start_server

    started: list[LiveServer] = []

    def serve(target: str, interface: str = "rsgi", **options: Any) -> LiveServer:
        server = start_server(target, interface, **options)
        started.append(server)
        return server

    try:
        yield serve
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def gobstopper_server(
    request: pytest.FixtureRequest,
    gobstopper_target: str,
    gobstopper_serve: Callable[..., LiveServer],
) -> LiveServer:
    """``gobstopper_target`` under a real granian on a free port of 127.0.0.1 (``.ws``,
    ``.http``, ``.port``, ``.log()``). RSGI by default; for ASGI, or both, parametrise it
    indirectly: ``@pytest.mark.parametrize("gobstopper_server", ["rsgi", "asgi"],
    indirect=True)``."""
    interface = getattr(request, "param", "rsgi")
    return gobstopper_serve(gobstopper_target, interface)
