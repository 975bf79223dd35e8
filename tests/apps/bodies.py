"""An app with HTTP routes that read request bodies, for the body limit's tests."""

from __future__ import annotations

from pathlib import Path

from gobstopper import Gobstopper, Request

app = Gobstopper()


@app.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


@app.post("/upload/large")
async def upload_large(request: Request) -> dict[str, int]:
    # A route may take more than the app-wide limit by saying so.
    return {"bytes": len(await request.body(limit=4 * 1024 * 1024))}


def _status(keys: tuple[str, ...]) -> dict[str, int]:
    # /proc is in memory: reading it does not block.
    lines = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return {key: int(fields[key].split()[0]) for key in keys}


@app.get("/memory")
async def memory() -> dict[str, int]:
    """This worker's resident memory now and at its peak, in KiB (Linux)."""
    return _status(("VmRSS", "VmHWM"))
