"""Who a connection belongs to, and for how long: the ``Identity`` an auth hook returns.

An auth hook (``@app.auth``, ``@app.websocket(..., auth=...)``) may return an
``Identity`` instead of True: the connection then belongs to ``user`` (presence lists it
under that user, ``disconnect_user`` reaches it), carries ``meta`` (what presence shows
of it: a name, a device, a status) and, with ``expires_at``, must present a new
credential before then (``rpc.refresh``) or be closed with 4001.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity:
    """What an auth hook found out about a connection.

    Example: ``return Identity("ann", {"name": "Ann"}, expires_at=claims["exp"])``.

    Attributes:
        user: the user the connection belongs to (several connections may).
        meta: JSON-able facts presence shows about this connection; at most
            ``GOBSTOPPER_PRESENCE_META_BYTES`` as JSON.
        expires_at: when the credential expires (``time.time()`` seconds, a JWT's
            ``exp``); None: never.
    """

    user: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user:
            raise ValueError(f"Identity.user must be a non-empty string, not {self.user!r}")
        if not isinstance(self.meta, Mapping):
            raise TypeError(f"Identity.meta must be a mapping, not {type(self.meta).__name__}")
        expires = self.expires_at
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, (int, float))
        ):
            raise TypeError(f"Identity.expires_at must be a number of seconds, not {expires!r}")
