"""What the test kit raises, besides gobstopper's own ``ConnectionClosed``.

The tree::

    GobstopperError
    ├── WebSocketDenied      the app refused the handshake; carries ``status`` and ``body``
    ├── ReceiveTimeout       nothing arrived in time (also a ``TimeoutError``)
    └── ConnectionClosed     (gobstopper.errors) the server closed; carries ``code``,
                             ``reason``
"""

from __future__ import annotations

from ..errors import GobstopperError

__all__ = ["ReceiveTimeout", "WebSocketDenied"]


class WebSocketDenied(GobstopperError):
    """The app refused a WebSocket handshake with an HTTP answer.

    Attributes:
        status: the HTTP status (403 for a close before accept, as ASGI servers answer).
        headers: the answer's headers, names in lower case.
        body: the answer's body.
    """

    def __init__(self, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        shown = body.decode("utf-8", "replace")[:200]
        super().__init__(
            f"{path}: handshake refused with {status}" + (f": {shown}" if shown else "")
        )
        self.status = status
        self.headers = headers
        self.body = body


class ReceiveTimeout(GobstopperError, TimeoutError):
    """Nothing arrived within the timeout (a message, a handshake answer, a start-up)."""
