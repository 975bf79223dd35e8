"""The browser client, a single JavaScript file served by the app itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from ..http import Request, Response

__all__ = ["CLIENT_JS", "serve_client_js"]


class _Routes(Protocol):
    """What serving the file needs of an app (``Gobstopper``): its GET decorator."""

    def get(self, path: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]: ...


#: Where the browser client lives in the installed package.
CLIENT_JS = Path(__file__).resolve().parent.parent / "static" / "gobstopper.js"


def serve_client_js(app: _Routes, path: str = "/gobstopper.js") -> None:
    """Serve the browser client at ``path`` (``<script src="/gobstopper.js">``).

    The file is read once, here; it is sent with a validator so browsers revalidate
    it cheaply after an upgrade.

    Example: ``serve_client_js(app)``.
    """
    body = CLIENT_JS.read_bytes()
    etag = '"%x"' % (hash(body) & 0xFFFFFFFF)

    @app.get(path)
    async def client_js(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status=304, headers={"etag": etag})
        return Response(
            body,
            media_type="text/javascript; charset=utf-8",
            headers={"etag": etag, "cache-control": "no-cache"},
        )
