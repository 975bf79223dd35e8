"""Test gobstopper apps: in-process clients, a real server, and a pytest plugin.

* ``AsyncTestClient`` / ``TestClient``: the app driven through its ASGI entry point,
  in-process (WebSockets, plain HTTP, lifespan), async or from plain tests.
* ``RPCTestClient``: the Python client of the message layer, in-process
  (``client.rpc(path)``).
* ``LiveServer`` / ``start_server``: the app under a real granian on a free port.
* The pytest plugin (``gobstopper.testing.plugin``, loaded by pytest when gobstopper is
  installed): fixtures for all of the above.

See docs/testing.md. Failures: ``WebSocketDenied`` (a refused handshake, with its
status), ``ReceiveTimeout`` (nothing arrived in time), ``gobstopper.ConnectionClosed``
(the server closed, with its code and reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util import lazy_exports
from ..errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

if TYPE_CHECKING:
    from .client import DEFAULT_TIMEOUT, AsyncTestClient, TestResponse
    from .errors import ReceiveTimeout, WebSocketDenied
    from .rpc import RPCTestClient
    from .server import LiveServer, free_port, start_server
    from .sync import TestClient, WebSocketSession
    from .websocket import AsyncWebSocketSession

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncTestClient",
    "AsyncWebSocketSession",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "LiveServer",
    "RPCTestClient",
    "ReceiveTimeout",
    "TestClient",
    "TestResponse",
    "WebSocketDenied",
    "WebSocketSession",
    "free_port",
    "start_server",
]

# Imported on first use: the pytest plugin (gobstopper.testing.plugin) loads in every
# test run of a project that installs gobstopper, and must stay light.
_SOURCES = {
    **dict.fromkeys(("DEFAULT_TIMEOUT", "AsyncTestClient", "TestResponse"), ".client"),
    **dict.fromkeys(("ReceiveTimeout", "WebSocketDenied"), ".errors"),
    "RPCTestClient": ".rpc",
    **dict.fromkeys(("LiveServer", "free_port", "start_server"), ".server"),
    **dict.fromkeys(("TestClient", "WebSocketSession"), ".sync"),
    "AsyncWebSocketSession": ".websocket",
}

if not TYPE_CHECKING:  # type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)
