"""The HTTP API without a server: its settings, its command checks, and its requests
through the app's ASGI interface (by hand where the test counts the body's chunks read:
a body over the limit is not read to its end; with the test kit elsewhere)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gobstopper import RPC, Config, ConfigError, Gobstopper, HTTPError, WebSocketManager
from gobstopper.api import COMMANDS, HTTPAPI
from gobstopper.testing import AsyncTestClient

KEY = "0123456789abcdef-key"


def test_a_short_key_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="GOBSTOPPER_API_KEY is 9 characters") as caught:
        Config.load({"GOBSTOPPER_API_KEY": "hunter2!!"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="api_key is 5 characters"):
        Config.load({}, api_key="short")


def test_the_key_is_off_by_default_and_kept_out_of_the_repr() -> None:
    assert Config.load({}).api_key is None
    assert Config.load({"GOBSTOPPER_API_KEY": ""}).api_key is None
    config = Config.load({"GOBSTOPPER_API_KEY": KEY})
    assert config.api_key == KEY and KEY not in repr(config)


@pytest.mark.parametrize("path", ["api", "/api/<x>", "/api/{x}", "/a b", ""])
def test_the_path_must_be_a_plain_absolute_path(path: str) -> None:
    with pytest.raises(ConfigError, match="GOBSTOPPER_API_PATH"):
        Config.load({"GOBSTOPPER_API_PATH": path})


def test_endpoints_register_in_their_manager_once_per_name() -> None:
    manager = WebSocketManager()
    rpc = RPC(manager)
    chat = RPC(manager, name="chat")
    assert manager.endpoints == {"rpc": rpc, "chat": chat}
    with pytest.raises(ValueError, match="'chat' already"):
        RPC(manager, name="chat")


@pytest.fixture
def api() -> HTTPAPI:
    manager = WebSocketManager()
    RPC(manager)
    return HTTPAPI(manager, KEY, 1024)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([1], "a command is a JSON object"),
        ({"data": 1}, 'needs a "command" field'),
        ({"command": "fly"}, "unknown command 'fly'"),
        ({"command": "publish", "data": 1}, "missing required field `channel`"),
        ({"command": "publish", "channel": "a", "data": 1, "exclude": "b"}, "$.exclude"),
        ({"command": "send", "id": "a", "data": 5}, "$.data"),
        ({"command": "broadcast", "data": {"bytes": "%%"}}, "base64"),
        ({"command": "disconnect", "id": "a", "code": 999}, "$.code"),
        ({"command": "disconnect", "id": "a", "code": 1001}, "3000 to 4999"),
        ({"command": "history", "channel": "a", "limit": -1}, "$.limit"),
        ({"command": "history", "channel": "a", "since": {"offset": 1}}, "`epoch`"),
        ({"command": "stats", "verbose": True}, "unknown field `verbose`"),
        ({"command": "publish", "channel": "a", "data": 1, "endpoint": "x"}, "no endpoint"),
    ],
)
async def test_a_bad_command_is_a_400_naming_what_is_wrong(
    api: HTTPAPI, command: Any, message: str
) -> None:
    with pytest.raises(HTTPError) as caught:
        await api.execute(command)
    assert caught.value.status == 400
    assert message in caught.value.detail


def test_every_command_is_documented_and_every_documented_one_exists() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "http-api.md").read_text()
    # The first column of the page's tables: the commands (settings are upper case).
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", page, re.M))
    assert set(COMMANDS) == documented
    assert {"publish", "disconnect_user", "stats"} <= set(COMMANDS)


async def asgi_post(
    app: Gobstopper, chunks: list[bytes], headers: dict[str, str]
) -> tuple[int, Any, int]:
    """POST ``chunks`` to /api through ASGI: the status, the JSON body, and how many
    chunks the app read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
    }
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"]), read


async def test_a_body_over_the_limit_is_not_read_to_its_end() -> None:
    app = Gobstopper(environ={}, api_key=KEY, api_max_bytes=100)
    auth = {"authorization": f"Bearer {KEY}"}
    chunks = [b" " * 60] * 10
    status, body, read = await asgi_post(app, chunks, auth)
    assert (status, read) == (413, 2)  # stopped at the chunk that went over
    assert body["error"]["code"] == 413
    declared = {**auth, "content-length": "600"}
    assert (await asgi_post(app, chunks, declared))[::2] == (413, 0)  # nothing read
    status, body, _ = await asgi_post(app, [b'{"command": ', b'"stats"}'], auth)
    assert status == 200 and body["connections"] == 0


async def test_without_the_key_nothing_is_read() -> None:
    app = Gobstopper(environ={}, api_key=KEY)
    status, body, read = await asgi_post(app, [b'{"command": "stats"}'], {"x-api-key": "no"})
    assert (status, read) == (401, 0)
    assert body == {"error": {"code": 401, "message": "a valid API key is required"}}


async def test_an_unexpected_failure_is_logged_and_answered_without_detail(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(api: HTTPAPI, command: object) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    monkeypatch.setitem(COMMANDS, "stats", (COMMANDS["stats"][0], broken))
    app = Gobstopper(environ={}, api_key=KEY)
    auth = {"authorization": f"Bearer {KEY}"}
    async with AsyncTestClient(app, headers=auth) as client:
        failed = await client.post("/api", json={"command": "stats"})
        batch = [{"command": "stats"}, {"command": "presence", "room": "r"}]
        partly = await client.post("/api", json=batch)
    assert failed.status == 500
    assert failed.json() == {"error": {"code": 500, "message": "internal error"}}
    assert partly.status == 200
    assert partly.json() == [
        {"error": {"code": 500, "message": "internal error"}},
        {"members": [], "count": 0, "users": {}, "unique_users": 0},
    ]
    assert "secret detail" in caplog.text  # in the server's log, with the traceback


async def test_a_key_read_with_its_newline_works_and_deep_nesting_is_a_400() -> None:
    app = Gobstopper(environ={"GOBSTOPPER_API_KEY": KEY + "\n"})
    assert app.config.api_key == KEY
    with pytest.raises(ConfigError, match="spaces or control characters"):
        Config.load({"GOBSTOPPER_API_KEY": "a key with spaces inside"})
    auth = {"x-api-key": "", "authorization": f"Bearer {KEY}"}  # an empty one: the other
    async with AsyncTestClient(app, headers=auth) as client:
        deep = await client.post("/api", body=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status == 400 and "nested too deep" in deep.json()["error"]["message"]
