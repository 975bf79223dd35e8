"""gobstopper: real-time WebSocket applications on Granian RSGI (and ASGI)."""

from __future__ import annotations

from .app import Gobstopper
from .brokers import Broker, BrokerHealth, MemoryBroker, MemoryHub, broker_from_url
from .config import Config, SlowConsumerPolicy
from .datastructures import Address, Headers, QueryParams
from .errors import (
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
from .http import HTMLResponse, JSONResponse, PlainTextResponse, Request, Response
from .manager import Connection, Delivery, WebSocketManager
from .messages import RPC, Event, RPCError, serve_client_js
from .outbox import DeliveryStats
from .websocket import Message, MessageType, State, WebSocket, WebSocketState

__all__ = [
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
    "Event",
    "Gobstopper",
    "GobstopperError",
    "HTMLResponse",
    "HTTPError",
    "Headers",
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
    "UnsupportedByServer",
    "WebSocket",
    "WebSocketManager",
    "WebSocketState",
    "broker_from_url",
    "serve_client_js",
]

__version__ = "0.1.0"
