"""Brokers: how rooms reach the other workers and hosts of a cluster.

``broker_from_url`` picks one by ``GOBSTOPPER_BROKER_URL``: ``memory://`` (the default,
this process only), ``redis://host:port/db`` / ``rediss://``, a Redis Cluster
(``redis+cluster://host:port,host:port`` / ``rediss+cluster://``; both need the ``redis``
extra), or NATS (``nats://host:port[,host:port...]``; the ``nats`` extra). Each extra
is imported only when its broker is chosen.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Broker, BrokerHealth, MessageHandler
from .cluster_url import SCHEMES as CLUSTER_SCHEMES
from .cluster_url import parse_cluster_url
from .memory import MemoryBroker, MemoryHub

__all__ = [
    "Broker",
    "BrokerHealth",
    "MemoryBroker",
    "MemoryHub",
    "MessageHandler",
    "broker_from_url",
    "check_broker_url",
]

_VAR = "GOBSTOPPER_BROKER_URL"
_PASSWORD = re.compile(r"(://[^:/@,]*:)[^@/,]*@|(,[^:/@,]*:)[^@/,]*@")


def shown(url: str) -> str:
    """``url`` with its passwords masked, for error messages and logs."""
    return _PASSWORD.sub(lambda m: (m.group(1) or m.group(2)) + "***@", url)


def check_broker_url(url: str, variable: str = _VAR) -> str:
    """Validate a broker URL; return it.

    Raises:
        ConfigError: not ``memory://``, ``redis://`` or ``rediss://`` with a host, a db
            that is not a whole number, a Redis Cluster URL without a ``host:port``
            list or with a db other than 0, or Redis chosen without the ``redis`` extra.
    """
    if url.partition("://")[0].lower() in ("nats", "tls"):
        return _check_nats(url, variable)  # several servers: not one URL
    if url.partition("://")[0] in CLUSTER_SCHEMES:
        try:
            parse_cluster_url(url)
        except ValueError as exc:
            raise ConfigError(f"{variable}={shown(url)!r}: {exc}") from None
        return _require_redis(url, variable)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"{variable}={shown(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"{variable}={shown(url)!r}: the memory broker takes no address")
        return url
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(
            f"{variable}={shown(url)!r}: unknown broker {parts.scheme!r}; use memory://, "
            "redis://host:port/db (rediss:// for TLS) or nats://host:port[,host:port]"
        )
    if not parts.hostname:
        raise ConfigError(
            f"{variable}={shown(url)!r}: a Redis URL needs a host, e.g. redis://127.0.0.1:6379/0"
        )
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ConfigError(f"{variable}={shown(url)!r}: the database must be a number, e.g. /0")
    del port
    return _require_redis(url, variable)


def _require_redis(url: str, variable: str) -> str:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{variable}={shown(url)!r} needs the redis client: install the `redis` extra "
            "(`pip install -e '.[redis]'` in a checkout, or `pip install redis`)"
        ) from None
    return url


def _check_nats(url: str, variable: str) -> str:
    try:
        import nats  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{variable}={shown(url)!r} needs the NATS client: install the `nats` extra "
            "(`pip install -e '.[nats]'` in a checkout, or `pip install nats-py`)"
        ) from None
    from .nats import parse_url

    parse_url(url, variable)
    return url


def broker_from_url(url: str, *, presence_ttl: float = 10.0, prefix: str = "gobstopper:") -> Broker:
    """A broker for ``url`` (see ``check_broker_url``), not yet started.

    Examples:
        ```python
        broker = broker_from_url("redis://127.0.0.1:6379/0")
        ```
    """
    check_broker_url(url)
    if url.startswith("memory:"):
        return MemoryBroker()
    if url.partition("://")[0].lower() in ("nats", "tls"):
        from .nats import NatsBroker

        return NatsBroker(url, presence_ttl=presence_ttl, prefix=prefix)
    if url.partition("://")[0] in CLUSTER_SCHEMES:
        from .redis import RedisClusterBroker

        return RedisClusterBroker(url, presence_ttl=presence_ttl, prefix=prefix)
    from .redis import RedisBroker

    return RedisBroker(url, presence_ttl=presence_ttl, prefix=prefix)
