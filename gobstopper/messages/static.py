"""The browser client, a single JavaScript file served by the app itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..http import Request, Response

if TYPE_CHECKING:
    from ..app import Gobstopper

__all__ = ["CLIENT_JS", "serve_client_js"]

#: Where the browser client lives in the installed package.
CLIENT_JS = Path(__file__).resolve().parent.parent / "static" / "gobstopper.js"


def serve_client_js(app: Gobstopper, path: str = "/gobstopper.js") -> None:
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
