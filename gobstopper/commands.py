"""Commands for connections that travel between nodes and from other processes (an
emitter, the HTTP API): closing a connection by id, or every connection of a user.

A command is a small JSON object on the ``CONTROL`` topic, checked on arrival as a
local call would be: whatever another process sent, a node goes on.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import CloseCode

__all__ = ["CONTROL", "LIMITS", "USER_ROOM", "control_command", "read_command"]


#: The topic of commands between nodes (and from other processes) for connections.
CONTROL = "control"
#: The room of a user's connections: ``USER_ROOM + user``, joined only by ``connect(...,
#: user=...)``.
USER_ROOM = "user:"
#: The presence key under which each node lists its limits (``max_message_bytes <n>``).
LIMITS = "limits"


def control_command(code: int, reason: str) -> bytes:
    """The ``CONTROL`` payload that closes a connection with ``code`` and ``reason``.

    Raises:
        ValueError: a code an application may not send, or a reason over 123 bytes.
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise ValueError(f"code={code!r}: a close code is a number")
    if code != CloseCode.NORMAL_CLOSURE and not 3000 <= code <= 4999:
        raise ValueError(f"code={code}: use 1000 or an application code, 3000 to 4999")
    if len(reason.encode("utf-8")) > 123:
        raise ValueError("a close reason is at most 123 bytes")
    return json.dumps({"op": "disconnect", "code": code, "reason": reason}).encode()


def read_command(payload: bytes) -> tuple[int, str] | None:
    """The ``(code, reason)`` of a ``CONTROL`` payload that closes connections; None for
    a command of another kind.

    Raises:
        ValueError, TypeError: not a command, or a code or reason no local call takes.
    """
    command: Any = json.loads(payload)
    if not isinstance(command, dict):
        raise ValueError(f"not a command: {command!r:.80}")
    if command.get("op") != "disconnect":
        return None
    code, reason = command.get("code", 1000), command.get("reason", "")
    if type(code) is not int or not isinstance(reason, str):
        raise TypeError(f"code {code!r}, reason {reason!r}")
    control_command(code, reason)  # checked as a local call would be
    return code, reason
