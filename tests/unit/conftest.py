"""Fixtures of the Python client's unit tests: a server played by hand (``FakeServer``),
and a client of it that reconnects at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gobstopper.client import Client

from .client_server import FakeServer


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    return FakeServer.install(monkeypatch)


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[Client]:
    client = Client("ws://fake/rpc", timeout=2, backoff=0.001, max_backoff=0.002)
    yield client
    await client.close()
