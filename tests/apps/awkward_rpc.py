"""An RPC endpoint whose signatures are awkward for a typed client: a required
keyword-only parameter after an optional one, a default that is not of its own type,
positional-only next to keyword-only parameters, a tuple, a default JSON cannot carry.

Its stub must compile, pass ``mypy --strict`` and call each method as the server takes
it (``tests/unit/test_codegen.py`` in-process, ``tests/integration/test_openrpc_stubs.py``
under granian)."""

from __future__ import annotations

import math

from gobstopper import Gobstopper, WebSocket
from gobstopper.messages import RPC

app = Gobstopper()
rpc = RPC(app.manager, title="awkward", version="1")


@rpc.method()
async def kwmix(a: int = 1, *, b: int) -> list[int]:
    return [a, b]


@rpc.method()
async def implicit(x: int = None) -> str:  # type: ignore[assignment]  # noqa: RUF013
    return repr(x)


@rpc.method()
async def mixed(a: int, /, b: int = 1, *, c: int = 2) -> list[int]:
    return [a, b, c]


@rpc.method()
async def pair(t: tuple[int, str] = (1, "a"), *, tail: bool = False) -> tuple[int, str]:
    return (t[0] + 1, t[1] + "!") if tail else t


@rpc.method()
async def far(x: float = math.inf) -> str:
    return repr(x)


@app.websocket("/rpc")
async def endpoint(ws: WebSocket) -> None:
    await rpc.serve(ws)
