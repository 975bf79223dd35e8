from __future__ import annotations

import uuid
from typing import Any

import pytest

from gobstopper import Gobstopper, RouteError, WebSocket
from gobstopper.routing import Router, compile_path
from gobstopper.testing import AsyncTestClient


async def ws_room(ws: Any, room: str) -> None: ...
async def ws_plain(ws: Any) -> None: ...
async def http_user(request: Any, id: int) -> None: ...
async def http_noarg() -> None: ...


def test_static_and_parametrised_paths_resolve_with_converted_params() -> None:
    router = Router()
    router.add("/ws/chat/<room>", ws_room)
    router.add("/ws/plain", ws_plain)
    match, _ = router.resolve("/ws/chat/lobby")
    assert (
        match is not None and match.route.endpoint is ws_room and match.params == {"room": "lobby"}
    )
    match, _ = router.resolve("/ws/plain")
    assert match is not None and match.route.endpoint is ws_plain
    assert router.resolve("/ws/chat/a/b")[0] is None  # <str> stops at '/'
    assert router.resolve("/ws/chat/")[0] is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/u/<int:id>", "/u/42", {"id": 42}),
        ("/u/<int:id>", "/u/-1", None),
        ("/u/<int:id>", "/u/4x", None),
        ("/f/<float:x>", "/f/1.5", {"x": 1.5}),
        ("/files/<path:rest>", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("/files/<path:rest>", "/files/", {"rest": ""}),
        (
            "/id/<uuid:key>",
            "/id/12345678-1234-5678-1234-567812345678",
            {"key": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        ),
        ("/id/<uuid:key>", "/id/nope", None),
        ("/a/<str:x>/b/<int:y>", "/a/hello/b/7", {"x": "hello", "y": 7}),
        ("/dot/<x>.json", "/dot/report.json", {"x": "report"}),
    ],
)
def test_converters(pattern: str, path: str, expected: dict[str, Any] | None) -> None:
    router = Router()

    async def endpoint(conn: Any, **params: Any) -> None: ...

    router.add(pattern, endpoint)
    match, _ = router.resolve(path)
    assert (match.params if match else None) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("no/slash", "must be a string starting with '/'"),
        ("/a/<int:id", "unbalanced"),
        ("/a/int:id>", "unbalanced"),
        ("/a/<>", "valid Python name"),
        ("/a/<int:>", "valid Python name"),
        ("/a/<1x>", "valid Python name"),
        ("/a/<hex:x>", "unknown converter 'hex'"),
        ("/a/<x>/<int:x>", "appears twice"),
        ("/a/{x", "unbalanced '{' or '}'"),
        ("/a/x}", "unbalanced '{' or '}'"),
        ("/a/{}", "valid Python name"),
        ("/a/{x:hex}", "unknown converter 'hex'"),
        ("/a/{int:x}", r"unknown converter 'x'.*write <int:x> or \{x:int\}"),
        ("/a/<x:int>", r"unknown converter 'x'.*write <int:x> or \{x:int\}"),
        ("/a/<x>/{x:int}", "appears twice"),
    ],
)
def test_malformed_patterns_fail_at_registration(pattern: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        compile_path(pattern)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/ws/{room}", "/ws/lobby", {"room": "lobby"}),
        ("/u/{id:int}", "/u/42", {"id": 42}),
        ("/u/{id:int}", "/u/x", None),
        ("/p/{x:float}", "/p/1.5", {"x": 1.5}),
        ("/k/{key:uuid}", f"/k/{uuid.UUID(int=7)}", {"key": uuid.UUID(int=7)}),
        ("/f/{rest:path}", "/f/a/b", {"rest": "a/b"}),
        ("/r/{name:str}.json", "/r/x.json", {"name": "x"}),
    ],
)
def test_starlette_style_parameters(
    pattern: str, path: str, expected: dict[str, Any] | None
) -> None:
    router = Router()

    async def endpoint(ws: Any, **params: Any) -> None: ...

    router.add(pattern, endpoint)
    match, _ = router.resolve(path)
    assert (match.params if match else None) == expected


async def test_starlette_style_websocket_route_serves_its_parameter() -> None:
    app = Gobstopper(environ={})

    @app.websocket("/ws/{room}")
    async def chat(ws: WebSocket, room: str) -> None:
        await ws.accept()
        await ws.send_text(f"in {room}")
        await ws.close()

    @app.get("/items/{id:int}")
    async def item(id: int) -> dict[str, int]:
        return {"id": id}

    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/ws/lobby") as ws:
            assert await ws.receive_text() == "in lobby"
        assert (await client.get("/items/7")).json() == {"id": 7}
        assert (await client.get("/items/seven")).status == 404


def test_both_spellings_are_the_same_route() -> None:
    app = Gobstopper(environ={})

    @app.websocket("/ws/<room>")
    async def one(ws: WebSocket, room: str) -> None: ...

    with pytest.raises(RouteError, match="already registered as '/ws/<room>'"):

        @app.websocket("/ws/{name}")
        async def two(ws: WebSocket, name: str) -> None: ...


def test_duplicate_routes_fail_even_with_other_param_names() -> None:
    app = Gobstopper(environ={})

    @app.websocket("/ws/<room>")
    async def one(ws: WebSocket, room: str) -> None: ...

    with pytest.raises(RouteError, match="already registered as '/ws/<room>'"):

        @app.websocket("/ws/<name>")
        async def two(ws: WebSocket, name: str) -> None: ...

    @app.get("/items/<int:id>")
    async def get_item(id: int) -> None: ...

    @app.post("/items/<int:id>")  # another method on the same path is fine
    async def post_item(id: int) -> None: ...

    with pytest.raises(RouteError, match=r"\(GET, HEAD\)"):

        @app.route("/items/<int:other>", methods=["GET", "DELETE"])
        async def again(other: int) -> None: ...

    # An HTTP route and a WebSocket route may share a path.
    @app.get("/ws/<room>")
    async def page(room: str) -> None: ...


def test_handlers_must_be_async_and_accept_the_path_parameters() -> None:
    app = Gobstopper(environ={})
    with pytest.raises(RouteError, match="must be an async function"):

        @app.get("/sync")
        def sync() -> None: ...

    with pytest.raises(RouteError, match="does not accept path parameter"):

        @app.websocket("/ws/<room>")
        async def wrong(ws: WebSocket, name: str) -> None: ...

    with pytest.raises(RouteError, match="must take the WebSocket"):

        @app.websocket("/ws/none")
        async def nothing() -> None: ...

    with pytest.raises(RouteError, match="required parameter"):

        @app.get("/extra")
        async def extra(request: Any, surprise: int) -> None: ...


def test_http_method_mismatch_reports_allowed_methods() -> None:
    router = Router()
    router.add("/u/<int:id>", http_user, ["GET", "HEAD"])
    match, allowed = router.resolve("/u/1", "POST")
    assert match is None and allowed == {"GET", "HEAD"}
    match, allowed = router.resolve("/u/1", "GET")
    assert match is not None and match.route.pass_connection
    router.add("/noarg", http_noarg, ["GET"])
    match, _ = router.resolve("/noarg", "GET")
    assert match is not None and not match.route.pass_connection


def test_connection_binds_to_the_first_parameter_only() -> None:
    app = Gobstopper(environ={})

    # The first parameter is a path parameter: no Request is passed.
    @app.get("/opt/<int:id>")
    async def opt(id: int, verbose: bool = False) -> None: ...

    match, _ = app.http_routes.resolve("/opt/3", "GET")
    assert match is not None and not match.route.pass_connection

    with pytest.raises(RouteError, match="WebSocket as its first argument"):

        @app.websocket("/ws/<room>")
        async def backwards(room: str, ws: WebSocket) -> None: ...


def test_methods_must_not_be_a_string() -> None:
    app = Gobstopper(environ={})
    with pytest.raises(RouteError, match=r"\['GET'\]"):
        app.route("/x", methods="GET")
