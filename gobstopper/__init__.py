"""gobstopper: real-time WebSocket applications on Granian RSGI (and ASGI).

The public names are imported on first use, so that ``import gobstopper.client`` (or
``gobstopper.messages.protocol``) loads neither granian nor the server's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._util import lazy_exports
from .errors import (  # pure and small: imported at once, by clients too
    BrokerUnavailable,
    CloseCode,
    ConfigError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    GobstopperError,
    HTTPError,
    MessageTooBig,
    RouteError,
    UnsupportedByServer,
)

if TYPE_CHECKING:
    from .api import HTTPAPI
    from .app import Gobstopper
    from .auth import Identity, credential
    from .auth_jwt import jwt_auth
    from .brokers import Broker, BrokerHealth, MemoryBroker, MemoryHub, broker_from_url
    from .config import Config, SlowConsumerPolicy
    from .datastructures import Address, Headers, QueryParams
    from .emitter import Emitter, SyncEmitter
    from .http import HTMLResponse, JSONResponse, PlainTextResponse, Request, Response
    from .manager import Connection, Delivery, WebSocketManager
    from .messages import RPC, Event, RPCError, openrpc_document, serve_client_js
    from .outbox import DeliveryStats
    from .websocket import Message, MessageType, State, WebSocket, WebSocketState

__all__ = [
    "HTTPAPI",
    "RPC",
    "Address",
    "Broker",
    "BrokerHealth",
    "BrokerUnavailable",
    "CloseCode",
    "Config",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Delivery",
    "DeliveryStats",
    "Emitter",
    "Event",
    "Gobstopper",
    "GobstopperError",
    "HTMLResponse",
    "HTTPError",
    "Headers",
    "Identity",
    "JSONResponse",
    "MemoryBroker",
    "MemoryHub",
    "Message",
    "MessageTooBig",
    "MessageType",
    "PlainTextResponse",
    "QueryParams",
    "RPCError",
    "Request",
    "Response",
    "RouteError",
    "SlowConsumerPolicy",
    "State",
    "SyncEmitter",
    "UnsupportedByServer",
    "WebSocket",
    "WebSocketManager",
    "WebSocketState",
    "broker_from_url",
    "credential",
    "jwt_auth",
    "openrpc_document",
    "serve_client_js",
]

__version__ = "0.1.0"

# Where each public name lives (the same imports as under TYPE_CHECKING above).
_SOURCES = {
    "HTTPAPI": ".api",
    "Gobstopper": ".app",
    **dict.fromkeys(("Identity", "credential"), ".auth"),
    "jwt_auth": ".auth_jwt",
    **dict.fromkeys(
        ("Broker", "BrokerHealth", "MemoryBroker", "MemoryHub", "broker_from_url"), ".brokers"
    ),
    **dict.fromkeys(("Config", "SlowConsumerPolicy"), ".config"),
    **dict.fromkeys(("Address", "Headers", "QueryParams"), ".datastructures"),
    **dict.fromkeys(("Emitter", "SyncEmitter"), ".emitter"),
    **dict.fromkeys(
        ("HTMLResponse", "JSONResponse", "PlainTextResponse", "Request", "Response"), ".http"
    ),
    **dict.fromkeys(("Connection", "Delivery", "WebSocketManager"), ".manager"),
    **dict.fromkeys(
        ("RPC", "Event", "RPCError", "openrpc_document", "serve_client_js"), ".messages"
    ),
    "DeliveryStats": ".outbox",
    **dict.fromkeys(
        ("Message", "MessageType", "State", "WebSocket", "WebSocketState"), ".websocket"
    ),
}


if not TYPE_CHECKING:  # type checkers see the imports above, and catch a misspelt name
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)
