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

from ..errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
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
