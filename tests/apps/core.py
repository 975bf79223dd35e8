"""The app the core integration tests run under real servers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from gobstopper import (
    ConnectionClosed,
    Gobstopper,
    HTMLResponse,
    JSONResponse,
    MessageTooBig,
    Request,
    UnsupportedByServer,
    WebSocket,
)

app = Gobstopper()
started: list[str] = []
# Send-only handlers report here when they notice their client left; /ws/watch/<key>
# waits on it, so tests learn of the departure without polling.
departures: dict[str, asyncio.Future[float]] = {}


def _departure(key: str) -> asyncio.Future[float]:
    if key not in departures:
        departures[key] = asyncio.get_running_loop().create_future()
    return departures[key]


@app.on_startup
async def _startup() -> None:
    started.append("startup")


@app.on_shutdown
def _shutdown() -> None:
    target = os.environ.get("CORE_APP_SHUTDOWN_FILE")
    if target:
        Path(target).write_text("shutdown ran")


@app.get("/health")
async def health() -> dict[str, object]:
    return {"status": "ok", "started": started}


@app.get("/page")
async def page() -> HTMLResponse:
    return HTMLResponse("<h1>hello</h1>")


@app.get("/text")
async def text() -> str:
    return "plain"


@app.get("/crash")
async def crash() -> str:
    raise RuntimeError("boom in HTTP handler")


@app.route("/items/<int:item_id>", methods=["POST", "PUT"])
async def item(request: Request, item_id: int) -> JSONResponse:
    body = await request.json()
    return JSONResponse(
        {"id": item_id, "method": request.method, "body": body, "q": request.query_params.get("q")},
        status=201,
    )


@app.websocket("/ws/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        if isinstance(message.data, str):
            await ws.send_text(message.data)
        else:
            await ws.send_bytes(message.bytes)


@app.websocket("/ws/json")
async def json_echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        try:
            obj = await ws.receive_json()
        except ValueError:
            await ws.send_json({"error": "not json"})
            continue
        await ws.send_json({"got": obj})


@app.websocket("/ws/info/<room>/<int:number>/<path:rest>")
async def info(ws: WebSocket, room: str, number: int, rest: str) -> None:
    await ws.accept()
    client = ws.client
    await ws.send_json(
        {
            "room": room,
            "number": number,
            "number_is_int": isinstance(number, int),
            "rest": rest,
            "path": ws.path,
            "query": ws.query_params.getlist("tag"),
            "header": ws.headers.get("x-test"),
            "cookies": ws.cookies,
            "client_host": client.host if client else None,
            "interface": ws.interface,
            "scheme": ws.scheme,
            "state": ws.connection_state.value,
        }
    )
    await ws.close()


@app.websocket("/ws/reject/<int:status>")
async def reject(ws: WebSocket, status: int) -> None:
    await ws.close(status)


@app.websocket("/ws/crash-before-accept")
async def crash_before(ws: WebSocket) -> None:
    raise RuntimeError("boom before accept")


@app.websocket("/ws/crash-after-accept")
async def crash_after(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("boom after accept")


@app.websocket("/ws/size")
async def size(ws: WebSocket) -> None:
    """Reports the size of each message; 'send N' sends N bytes of text back."""
    await ws.accept()
    async for message in ws:
        if isinstance(message.data, str) and message.data.startswith("send "):
            n = int(message.data.split()[1])
            try:
                await ws.send_text("x" * n)
            except MessageTooBig as exc:
                await ws.send_text(f"too big: {exc.size} > {exc.limit}")
        else:
            assert message.data is not None
            await ws.send_text(f"received {len(message.data)}")


@app.websocket("/ws/closed-code")
async def closed_code(ws: WebSocket) -> None:
    """Tells a watcher which close code the handler saw."""
    await ws.accept()
    key = ws.query_params["key"]
    try:
        while True:
            await ws.receive_text()
    except ConnectionClosed as exc:
        _departure(key).set_result(float(exc.code))


@app.websocket("/ws/stream")
async def stream(ws: WebSocket) -> None:
    await ws.accept()
    kind = await ws.receive_text()
    payload = bytes(i % 251 for i in range(1024 * 1024))
    if kind == "bytes":
        count = await ws.send_stream(payload)
    elif kind == "iter":
        count = await ws.send_stream(iter([payload[:100_000], payload[100_000:]]))
    else:
        count = await ws.send_stream(_agen(payload))
    await ws.send_text(f"done {count}")
    await ws.receive_text()


async def _agen(payload: bytes):  # type: ignore[no-untyped-def]
    for start in range(0, len(payload), 300_000):
        yield payload[start : start + 300_000]


@app.websocket("/ws/ticker")
async def ticker(ws: WebSocket) -> None:
    """Sends only, never reads: must still notice a departed client."""
    await ws.accept()
    key = ws.query_params["key"]
    try:
        while True:
            await ws.send_text("tick")
            await asyncio.sleep(0.1)  # pacing the ticks on purpose
    except ConnectionClosed:
        _departure(key).set_result(time.monotonic())


@app.websocket("/ws/watch/<key>")
async def watch(ws: WebSocket, key: str) -> None:
    await ws.accept()
    value = await _departure(key)
    await ws.send_text(str(value))
    await ws.close()


@app.websocket("/ws/subprotocol")
async def subprotocol(ws: WebSocket) -> None:
    try:
        wanted = ws.requested_subprotocols[0] if ws.requested_subprotocols else "none"
        await ws.accept(subprotocol=wanted, headers=[("x-extra", "1")])
    except UnsupportedByServer:
        await ws.accept()
        await ws.send_text("unsupported")
        return
    await ws.send_text(f"chose {ws.subprotocol}")


@app.websocket("/ws/close-with-reason")
async def close_with_reason(ws: WebSocket) -> None:
    await ws.accept()
    await ws.close(4001, "bye now")


kept: list[WebSocket] = []


@app.websocket("/ws/kept")
async def kept_alive(ws: WebSocket) -> None:
    """Keeps a reference to its WebSocket after it returns, as apps sometimes do."""
    kept.append(ws)
    await ws.accept()
    await ws.send_text("hello")
    await ws.wait_closed()
