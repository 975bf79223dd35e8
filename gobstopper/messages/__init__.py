"""The message layer: JSON-RPC 2.0 over a WebSocket, with events and channels.

``RPC`` dispatches requests, notifications and batches to methods (plain or
streaming) registered with a decorator, validates their parameters from the type
hints, routes named events to their handlers, and serves channel subscriptions with
wildcard patterns. Errors are answered as JSON-RPC errors, never by closing the
connection. The wire protocol is in ``docs/protocol.md``.

The public names are imported on first use: the clients import ``protocol``, ``codec``
and ``channels`` from here without loading the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util import lazy_exports

if TYPE_CHECKING:
    from .channels import matches
    from .events import Event
    from .guards import Guard, all_of, any_of, equals, has
    from .openrpc import openrpc_document
    from .protocol import ACCESS_DENIED, RATE_LIMITED, REQUEST_CANCELLED, TOO_MANY_SUBSCRIPTIONS
    from .rpc import RPC, RPCError
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
    "openrpc_document",
    "serve_client_js",
]

# Where each public name lives (the same imports as under TYPE_CHECKING above).
_SOURCES = {
    "matches": ".channels",
    "Event": ".events",
    **dict.fromkeys(("Guard", "all_of", "any_of", "equals", "has"), ".guards"),
    "openrpc_document": ".openrpc",
    **dict.fromkeys(
        ("ACCESS_DENIED", "RATE_LIMITED", "REQUEST_CANCELLED", "TOO_MANY_SUBSCRIPTIONS"),
        ".protocol",
    ),
    **dict.fromkeys(("RPC", "RPCError"), ".rpc"),
    **dict.fromkeys(("CLIENT_JS", "serve_client_js"), ".static"),
}


if not TYPE_CHECKING:  # type checkers see the imports above, and catch a misspelt name
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)
