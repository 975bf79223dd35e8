"""gobstopper: real-time WebSocket applications on Granian RSGI (and ASGI)."""

from __future__ import annotations

from .app import Gobstopper
from .config import Config
from .datastructures import Address, Headers, QueryParams
from .errors import (
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
from .websocket import Message, MessageType, State, WebSocket, WebSocketState

__all__ = [
    "Address",
    "CloseCode",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Gobstopper",
    "GobstopperError",
    "HTMLResponse",
    "HTTPError",
    "Headers",
    "JSONResponse",
    "Message",
    "MessageTooBig",
    "MessageType",
    "PlainTextResponse",
    "QueryParams",
    "Request",
    "Response",
    "RouteError",
    "State",
    "UnsupportedByServer",
    "WebSocket",
    "WebSocketState",
]

__version__ = "0.1.0"
