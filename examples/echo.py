"""Echo server: every text or binary message comes straight back.

Run: granian --interface rsgi examples.echo:app
Then open http://127.0.0.1:8000/ in a browser.
"""

from __future__ import annotations

from gobstopper import Gobstopper, HTMLResponse, WebSocket

app = Gobstopper()


@app.websocket("/ws/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        if message.data is not None:
            if isinstance(message.data, str):
                await ws.send_text(message.data)
            else:
                await ws.send_bytes(message.data)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


PAGE = """<!doctype html>
<meta charset="utf-8"><title>gobstopper echo</title>
<input id="msg" placeholder="say something" autofocus> <button id="send">send</button>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const ws = new WebSocket(`ws://${location.host}/ws/echo`);
ws.onopen = () => log("connected");
ws.onmessage = (event) => log("< " + event.data);
ws.onclose = (event) => log("closed (" + event.code + ")");
document.getElementById("send").onclick = () => {
  const input = document.getElementById("msg");
  ws.send(input.value); log("> " + input.value); input.value = "";
};
</script>
"""


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)
