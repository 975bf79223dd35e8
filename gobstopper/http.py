"""The small Request and Response of plain HTTP routes (health checks, pages, APIs)."""

from __future__ import annotations

import json
from typing import Any

from .datastructures import Scope
from .errors import HTTPError
from .transport.base import HTTPExchange, ScopeInfo, body_too_large

__all__ = ["HTMLResponse", "JSONResponse", "PlainTextResponse", "Request", "Response"]


class Request(Scope):
    """An HTTP request.

    Examples:
        ```python
        @app.get("/users/<int:id>")
        async def user(request: Request, id: int) -> dict[str, int]:
            return {"id": id}
        ```
    """

    __slots__ = ("_body", "_exchange", "max_body_bytes", "path_params")

    def __init__(
        self,
        info: ScopeInfo,
        exchange: HTTPExchange,
        path_params: dict[str, Any] | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        super().__init__(info)
        self._exchange = exchange
        self.path_params: dict[str, Any] = path_params or {}
        #: The most bytes ``body()`` reads unless told otherwise (``HTTP_MAX_BODY_BYTES``);
        #: None for no limit.
        self.max_body_bytes = max_body_bytes
        self._body: bytes | None = None

    @property
    def method(self) -> str:
        return self._info.method

    async def body(self, limit: int | None = None) -> bytes:
        """The whole request body (read once, then cached).

        Args:
            limit: the most bytes to take; default ``max_body_bytes``
                (``HTTP_MAX_BODY_BYTES``). A larger one lets this route take more. A
                ``content-length`` over it is refused before reading; otherwise the body
                is read chunk by chunk and refused as soon as it goes over, so no more
                than the limit is ever held.

        Raises:
            HTTPError: 413, the body is over the limit (the client gets a 413 answer).
        """
        explicit = limit is not None
        if limit is None:
            limit = self.max_body_bytes
        if self._body is None:
            if limit is not None:
                declared = self.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise body_too_large(limit)
            self._body = await self._exchange.body(limit)
        elif explicit and limit is not None and len(self._body) > limit:
            # Read already, within the limit of that read (a route may take more than the
            # default): only a limit asked for now applies again, never the default.
            raise body_too_large(limit)
        return self._body

    async def text(self) -> str:
        return (await self.body()).decode()

    async def json(self) -> Any:
        """The body decoded as JSON.

        Raises:
            HTTPError: 400, the body is not valid JSON (the client gets a 400 answer).
        """
        try:
            return json.loads(await self.body())
        except ValueError:
            raise HTTPError(400, "request body is not valid JSON") from None


class Response:
    """A complete HTTP response.

    Args:
        body: ``str`` (encoded as UTF-8) or ``bytes``.
        status: the HTTP status code.
        headers: extra headers.
        media_type: the ``content-type``; ``charset=utf-8`` is added for text types.
    """

    media_type = "application/octet-stream"

    def __init__(
        self,
        body: str | bytes = b"",
        status: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        # Lower-case names, so a user's "Content-Type" replaces the default one.
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        if status in (204, 304):
            return  # no body, so no content-type
        mt = media_type or self.media_type
        if mt.startswith("text/") and "charset" not in mt:
            mt += "; charset=utf-8"
        self.headers.setdefault("content-type", mt)

    def header_list(self) -> list[tuple[str, str]]:
        if self.status in (204, 304):
            return list(self.headers.items())
        return [*self.headers.items(), ("content-length", str(len(self.body)))]


class PlainTextResponse(Response):
    media_type = "text/plain"


class HTMLResponse(Response):
    media_type = "text/html"


class JSONResponse(Response):
    """A JSON body: ``JSONResponse({"ok": True})``."""

    media_type = "application/json"

    def __init__(
        self, content: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
        super().__init__(body, status, headers)


def to_response(value: Any) -> Response:
    """Turn what a handler returned into a Response: str is text, dict/list is JSON."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return PlainTextResponse(value)
    if isinstance(value, bytes):
        return Response(value)
    if value is None:
        return Response(b"", status=204)
    if isinstance(value, (dict, list)):
        return JSONResponse(value)
    raise TypeError(
        f"a handler returned {type(value).__name__}; return a Response, str, bytes, dict or list"
    )
