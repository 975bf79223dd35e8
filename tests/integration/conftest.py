from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import Server, start


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def core_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The core test app under granian, once per interface."""
    server = start("tests.apps.core:app", request.param)
    yield server
    server.stop()
