"""Redis Cluster URLs: ``redis+cluster://[[user]:password@]host:port[,host:port...][/0]``.

A cluster URL names a few of its masters (any one reachable is enough: the broker asks
it for the rest), so its address part is a comma-separated list, which ``urlsplit``
does not read. This module reads it without the redis client, so that a bad URL is
reported the same with or without the ``redis`` extra. ``rediss+cluster://`` is the
same over TLS. A cluster has only database 0: any other is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["SCHEMES", "ClusterURL", "parse_cluster_url"]

SCHEMES = ("redis+cluster", "rediss+cluster")
_DEFAULT_PORT = 6379


@dataclass(frozen=True)
class ClusterURL:
    """What a cluster URL says.

    Attributes:
        nodes: the addresses given, ``(host, port)``, in order.
        username: for ``AUTH``, if any.
        password: for ``AUTH``, if any.
        tls: ``rediss+cluster://``.
    """

    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    tls: bool


def parse_cluster_url(url: str) -> ClusterURL:
    """Read a cluster URL.

    Raises:
        ValueError: not a cluster URL, no address, a bad address or port, or a database
            other than 0; the message says which.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a Redis Cluster URL ({' or '.join(s + '://' for s in SCHEMES)})")
    netloc, _, path = rest.partition("/")
    path, _, _ = path.partition("?")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: leave the path empty or /0")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = [_address(entry) for entry in hosts.split(",") if entry.strip()]
    if not nodes:
        raise ValueError(
            "a Redis Cluster URL needs at least one host:port, e.g. "
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
        )
    return ClusterURL(nodes, username, password, scheme == "rediss+cluster")


def _address(entry: str) -> tuple[str, int]:
    parts = urlsplit("//" + entry.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {entry!r}") from None
    if not parts.hostname or parts.path or parts.query:
        raise ValueError(f"{entry!r} is not a host:port")
    return parts.hostname, port or _DEFAULT_PORT
