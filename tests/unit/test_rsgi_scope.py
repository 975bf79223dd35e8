"""The RSGI scope view: what it reads from granian's scope, and when."""

from __future__ import annotations

from typing import Any

from gobstopper.transport.rsgi import scope_info


class Headers:
    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name, default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items.items())


class Scope:
    """granian's scope, counting the attributes read."""

    def __init__(self, proto: str) -> None:
        self.read: list[str] = []
        self._values = {
            "proto": proto,
            "path": "/ws",
            "query_string": "a=1",
            "headers": Headers({"host": "example.com", "origin": "https://example.com"}),
            "client": "10.0.0.1:5000",
            "scheme": "https",
            "method": "GET",
        }

    def __getattr__(self, name: str) -> Any:
        self.read.append(name)
        return self._values[name]


def test_only_the_path_and_the_headers_are_read_up_front() -> None:
    scope = Scope("ws")
    info = scope_info(scope)
    assert sorted(scope.read) == ["headers", "path"]
    assert info.header("origin") == "https://example.com"
    assert (info.interface, info.path, info.query_string) == ("rsgi", "/ws", "a=1")
    assert (info.client, info.method) == ("10.0.0.1:5000", "GET")
    assert info.scheme == "wss"  # ASGI's name for a WebSocket's scheme
    assert info.headers == [("host", "example.com"), ("origin", "https://example.com")]


def test_an_http_scope_keeps_its_scheme() -> None:
    assert scope_info(Scope("http")).scheme == "https"
