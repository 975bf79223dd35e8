"""The message layer: JSON-RPC 2.0 over a WebSocket.

``RPC`` dispatches requests, notifications and batches to methods registered with a
decorator, validates their parameters from the type hints, and answers with results
or JSON-RPC errors (never by closing the connection).
"""

from __future__ import annotations

from .rpc import RPC, RPCError

__all__ = ["RPC", "RPCError"]
