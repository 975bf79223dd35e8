"""Server adapters: the only code that knows a server's protocol."""

from __future__ import annotations

from .base import HTTPExchange, ScopeInfo, TransportClosed, WebSocketTransport

__all__ = ["HTTPExchange", "ScopeInfo", "TransportClosed", "WebSocketTransport"]
