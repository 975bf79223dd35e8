"""Who may connect and how much they may send: origins, connection limits, rate limits.

Pure logic, no I/O: the app asks these objects before accepting a connection and for
each inbound message, and tests exercise them without sockets.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable

__all__ = ["ConnectionLimiter", "OriginPolicy", "RateLimiter"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The page's scheme for the connection's: a ``wss`` socket is opened by ``https`` pages.
_PAGE_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}

# RFC 6454 serialisation, nothing else: no userinfo, path, query, fragment, backslash or
# whitespace, which browsers never send and which lenient URL parsers read differently.
_HOST = r"(?P<host>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*|\[[0-9A-Fa-f:.]+\])"
_PORT = r"(?::(?P<port>[1-9][0-9]{0,4}))?"
_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://" + _HOST + _PORT, re.ASCII)
_HOST_PORT = re.compile(_HOST + _PORT, re.ASCII)

Origin = tuple[str, str, int | None]


def _host_port(match: re.Match[str]) -> tuple[str, int | None] | None:
    host = match["host"].lower()
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    port = match["port"]
    if port is None:
        return host, None
    if not 0 < int(port) < 65536:
        return None
    return host, int(port)


def parse_origin(origin: str) -> Origin | None:
    """``(scheme, host, port)`` of an origin, lower-cased, the default port filled in
    (80 for http, 443 for https; None for other schemes without one); None if it is not
    exactly ``scheme://host[:port]`` (``null``, userinfo, paths, backslashes...)."""
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return None
    split = _host_port(match)
    if split is None:
        return None
    scheme = match["scheme"].lower()
    host, port = split
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)


class OriginPolicy:
    """Decides whether a browser's ``Origin`` may open a WebSocket (cross-site hijacking).

    Args:
        allowed: exact origins (``https://app.example.com``), patterns with a leading
            ``*.`` in the host (``https://*.example.com``: its subdomains, that scheme,
            the default port unless one is given), or ``*`` for any origin. None: same
            host only (the Origin's host and port must be the ``Host`` the client
            connected to, and its scheme the connection's when that is known).

    Raises:
        ValueError: an entry is not an origin or pattern (a scheme is required; no path,
            userinfo or whitespace inside).

    A request without an ``Origin`` header is not from a browser page and is allowed:
    browsers always send one on a WebSocket handshake, and other clients can send any
    value they like, so the header protects browsers' users only. Origins are compared
    as scheme, host and port, exactly; anything but ``scheme://host[:port]`` is refused.

    Examples:
        ```python
        OriginPolicy(["https://app.example.com", "https://*.example.org"]).allows(
            "https://chat.example.org", "gob.example.com")  # True
        ```
    """

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        self.any = False
        self.exact: set[Origin] = set()
        self.suffixes: list[Origin] = []
        self.same_host_only = allowed is None
        for entry in allowed or ():
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            scheme, sep, rest = entry.partition("://")
            if not sep:
                raise ValueError(f"{entry!r} needs a scheme, e.g. https://{entry}")
            wildcard = rest.startswith("*.")
            split = parse_origin(f"{scheme}://{rest[2:]}" if wildcard else entry)
            if split is None or (wildcard and split[1].startswith("[")):
                raise ValueError(
                    f"{entry!r} is not an origin: scheme://host[:port] or "
                    "scheme://*.domain[:port], nothing before or after"
                )
            if wildcard:
                self.suffixes.append((split[0], "." + split[1], split[2]))
            else:
                self.exact.add(split)

    def allows(self, origin: str | None, host: str | None, scheme: str | None = None) -> bool:
        """Whether a handshake with this ``Origin`` (None: no header) is allowed.

        Args:
            origin: the ``Origin`` header, None when there is none.
            host: the ``Host`` header, for the same-host rule.
            scheme: the connection's scheme (``ws``/``wss`` or ``http``/``https``), for
                the same-host rule; None when unknown: host and port are compared only.
        """
        if origin is None or self.any:
            return True
        split = parse_origin(origin)
        if split is None:
            return False  # "null" (sandboxed frames, files) and garbage are refused
        if self.same_host_only:
            return _same_host(split, host, scheme)
        if split in self.exact:
            return True
        got_scheme, hostname, port = split
        for want_scheme, suffix, want_port in self.suffixes:
            if (want_scheme, want_port) == (got_scheme, port) and (
                hostname.endswith(suffix) and len(hostname) > len(suffix)
            ):
                return True
        return False


def _same_host(origin: Origin, host: str | None, scheme: str | None) -> bool:
    page_scheme = _PAGE_SCHEMES.get(scheme.lower()) if scheme else origin[0]
    if not host or page_scheme is None or page_scheme != origin[0]:
        return False
    match = _HOST_PORT.fullmatch(host)
    split = _host_port(match) if match else None
    if split is None:
        return False
    hostname, port = split
    if port is None:
        port = _DEFAULT_PORTS.get(page_scheme)
    return (hostname, port) == origin[1:]


class ConnectionLimiter:
    """Counts open connections, in all and per client IP; refuses past the limits.

    Args:
        max_total: connections at once (None: no limit).
        max_per_ip: connections at once from one IP address (None: no limit).
    """

    def __init__(self, max_total: int | None = None, max_per_ip: int | None = None) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def acquire(self, ip: str | None) -> str | None:
        """Count a new connection from ``ip``; None if it may open, else why not
        (``"too many connections"`` or ``"too many connections from this address"``).
        Every successful acquire must be released once."""
        if self.max_total is not None and self.total >= self.max_total:
            return "too many connections"
        if self.max_per_ip is None:  # nothing to count per address
            self.total += 1
            return None
        key = ip or ""
        count = self.per_ip.get(key, 0)
        if self.max_per_ip is not None and count >= self.max_per_ip:
            return "too many connections from this address"
        self.total += 1
        self.per_ip[key] = count + 1
        return None

    def release(self, ip: str | None) -> None:
        if self.max_per_ip is None and not self.per_ip:
            self.total = max(0, self.total - 1)
            return
        key = ip or ""
        count = self.per_ip.get(key, 0)
        if count <= 1:
            self.per_ip.pop(key, None)
        else:
            self.per_ip[key] = count - 1
        self.total = max(0, self.total - 1)


class RateLimiter:
    """A token bucket: ``rate`` messages per second on average, ``burst`` at once.

    Examples:
        ```python
        bucket = RateLimiter(rate=10, burst=20)
        bucket.allow()  # True until 20 arrive at once, then 10 a second
        ```
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._tokens = self.burst
        self._last = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        """Take one token if there is one; False when the client is over the limit."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
