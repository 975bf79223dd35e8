"""Who may connect and how much they may send: origins, connection limits, rate limits.

Pure logic, no I/O: the app asks these objects before accepting a connection and for
each inbound message, and tests exercise them without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["ConnectionLimiter", "OriginPolicy", "RateLimiter"]


def _split_origin(origin: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an Origin header, lower-cased; None if malformed."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class OriginPolicy:
    """Decides whether a browser's ``Origin`` may open a WebSocket (cross-site hijacking).

    Args:
        allowed: exact origins (``https://app.example.com``), patterns with a leading
            ``*.`` in the host (``https://*.example.com`` or ``*.example.com``, any
            scheme), or ``*`` for any origin. None: same host only (the Origin's host
            and port must be the ``Host`` the client connected to).

    A request without an ``Origin`` header is not from a browser page and is allowed:
    browsers always send one on a WebSocket handshake, and other clients can send any
    value they like, so the header protects browsers' users only.

    Examples:
        ```python
        OriginPolicy(["https://app.example.com", "*.example.org"]).allows(
            "https://chat.example.org", "gob.example.com")  # True
        ```
    """

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        self.any = False
        self.exact: set[tuple[str, str, int | None]] = set()
        self.suffixes: list[tuple[str | None, str, int | None]] = []
        self.same_host_only = allowed is None
        for entry in allowed or ():
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            scheme: str | None
            if "://" in entry:
                scheme, rest = entry.split("://", 1)
                scheme = scheme.lower()
            else:
                scheme, rest = None, entry
            if rest.startswith("*."):
                host, _, port_text = rest[2:].partition(":")
                if not host or "*" in host or "/" in host:
                    raise ValueError(f"{entry!r} is not an origin pattern")
                port = _port(entry, port_text)
                self.suffixes.append((scheme, "." + host.lower(), port))
                continue
            if scheme is None:
                raise ValueError(f"{entry!r} needs a scheme, e.g. https://{entry}")
            split = _split_origin(entry)
            if split is None or "*" in entry:
                raise ValueError(f"{entry!r} is not an origin")
            self.exact.add(_normal(split))

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a handshake with this ``Origin`` (None: no header) to ``host`` is allowed."""
        if origin is None or self.any:
            return True
        split = _split_origin(origin)
        if split is None:
            return False  # "null" (sandboxed frames, files) and garbage are refused
        scheme, hostname, port = _normal(split)
        if self.same_host_only:
            if not host:
                return False
            want = _split_origin(f"{scheme}://{host}")
            return want is not None and _normal(want)[1:] == (hostname, port)
        if (scheme, hostname, port) in self.exact:
            return True
        for want_scheme, suffix, want_port in self.suffixes:
            if want_scheme is not None and want_scheme != scheme:
                continue
            if want_port is not None and want_port != port:
                continue
            if want_port is None and want_scheme is not None and port != _DEFAULT_PORTS.get(scheme):
                continue
            if hostname.endswith(suffix) and len(hostname) > len(suffix):
                return True
        return False


def _port(entry: str, text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r} has a bad port")
    return int(text)


def _normal(split: tuple[str, str, int | None]) -> tuple[str, str, int | None]:
    scheme, host, port = split
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)


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
