from __future__ import annotations

from .servers import server_fixture

core_server = server_fixture(
    "tests.apps.core:app",
    "The core test app under granian (RSGI and ASGI) and uvicorn.",
    servers=("rsgi", "asgi", "uvicorn"),
)
