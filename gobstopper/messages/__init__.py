"""The message layer: JSON-RPC 2.0 over a WebSocket.

``RPC`` dispatches requests, notifications and batches to methods registered with a
decorator, validates their parameters from the type hints, and answers with results
or JSON-RPC errors (never by closing the connection).
"""

from __future__ import annotations

from .rpc import ACCESS_DENIED, RATE_LIMITED, RPC, Guard, RPCError, all_of, any_of, equals, has

__all__ = [
    "ACCESS_DENIED",
    "RATE_LIMITED",
    "RPC",
    "Guard",
    "RPCError",
    "all_of",
    "any_of",
    "equals",
    "has",
]
