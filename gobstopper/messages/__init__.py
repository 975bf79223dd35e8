"""The message layer: JSON-RPC 2.0 over a WebSocket, with events and channels.

``RPC`` dispatches requests, notifications and batches to methods (plain or
streaming) registered with a decorator, validates their parameters from the type
hints, routes named events to their handlers, and serves channel subscriptions with
wildcard patterns. Errors are answered as JSON-RPC errors, never by closing the
connection. The wire protocol is in ``docs/protocol.md``.
"""

from __future__ import annotations

from .channels import matches
from .events import Event
from .guards import Guard, all_of, any_of, equals, has
from .rpc import (
    ACCESS_DENIED,
    RATE_LIMITED,
    REQUEST_CANCELLED,
    RPC,
    TOO_MANY_SUBSCRIPTIONS,
    RPCError,
)
from .static import CLIENT_JS, serve_client_js

__all__ = [
    "ACCESS_DENIED",
    "CLIENT_JS",
    "RATE_LIMITED",
    "REQUEST_CANCELLED",
    "RPC",
    "TOO_MANY_SUBSCRIPTIONS",
    "Event",
    "Guard",
    "RPCError",
    "all_of",
    "any_of",
    "equals",
    "has",
    "matches",
    "serve_client_js",
]
