"""Read-only views of what a client sent: headers, query parameters, cookies."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.cookies import _unquote
from urllib.parse import parse_qsl

from .transport.base import ScopeInfo

__all__ = ["Address", "Headers", "QueryParams", "parse_cookies"]


@dataclass(frozen=True, slots=True)
class Address:
    """A peer's address."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str | None) -> Address | None:
        """Parse ``"ip:port"`` (``"[::1]:port"`` for IPv6) as RSGI gives it."""
        if not text:
            return None
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            return cls(text, 0)
        return cls(host.strip("[]"), int(port))


class _MultiMap(Mapping[str, str]):
    """An immutable multi-valued mapping: ``[key]`` gives the first value."""

    __slots__ = ("_first", "_items")

    def __init__(self, items: Iterable[tuple[str, str]], fold: bool) -> None:
        self._items = [(k.lower(), v) for k, v in items] if fold else list(items)
        self._first: dict[str, str] = {}
        for k, v in self._items:
            self._first.setdefault(k, v)

    def _key(self, key: str) -> str:
        return key

    def __getitem__(self, key: str) -> str:
        return self._first[self._key(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def getlist(self, key: str) -> list[str]:
        """All values for ``key``, in the order they were sent."""
        k = self._key(key)
        return [v for ik, v in self._items if ik == k]

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (key, value) pair, repeats included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class Headers(_MultiMap):
    """Request headers; keys are case-insensitive."""

    __slots__ = ()

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items, fold=True)

    def _key(self, key: str) -> str:
        return key.lower()


class QueryParams(_MultiMap):
    """Query string parameters.

    ``?a=1&a=2`` gives ``params["a"] == "1"`` and ``params.getlist("a") == ["1", "2"]``.
    """

    __slots__ = ()

    def __init__(self, query_string: str | bytes = "") -> None:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        super().__init__(parse_qsl(query_string, keep_blank_values=True), fold=False)


def parse_cookies(header: str | None) -> dict[str, str]:
    """Parse a ``Cookie`` header leniently, as browsers send it (the first value wins)."""
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for chunk in header.split(";"):
        key, sep, value = chunk.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        cookies.setdefault(key, _unquote(value))
    return cookies


class Scope:
    """What an HTTP request and a WebSocket both say about where they come from: the
    path, the query, the headers and cookies, the client and the scheme."""

    __slots__ = ("_headers", "_info", "_query")

    def __init__(self, info: ScopeInfo) -> None:
        self._info = info
        self._headers: Headers | None = None
        self._query: QueryParams | None = None

    @property
    def path(self) -> str:
        """The path, percent-decoded."""
        return self._info.path

    @property
    def query_string(self) -> str:
        return self._info.query_string

    @property
    def query_params(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self._info.query_string)
        return self._query

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._info.headers)
        return self._headers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None: one lookup, without
        building ``headers``."""
        if self._headers is not None:
            return self._headers.get(name)
        return self._info.header(name.lower())

    @property
    def cookies(self) -> dict[str, str]:
        return parse_cookies(self.headers.get("cookie"))

    @property
    def client(self) -> Address | None:
        """The client's address (``host``, ``port``), when the server gives it."""
        return Address.parse(self._info.client)

    @property
    def client_address(self) -> str | None:
        """The client's ``"host:port"`` as the server gave it, for logs (``None`` when
        it gave none); ``client`` parses it."""
        return self._info.client

    @property
    def scheme(self) -> str:
        return self._info.scheme
