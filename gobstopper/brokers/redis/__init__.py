"""The Redis brokers (the ``redis`` extra: ``pip install -e '.[redis]'``): ``broker.py`` subscribes,
listens and keeps presence; ``writer.py`` writes publishes and presence in order;
``history.py`` keeps channel history in Redis streams; ``cluster.py`` does the same on
a Redis Cluster, with ``slots.py`` routing each key to its master."""

from __future__ import annotations

from .broker import RedisBroker, redact
from .cluster import ClusterHistory, RedisClusterBroker
from .history import RedisHistory

__all__ = ["ClusterHistory", "RedisBroker", "RedisClusterBroker", "RedisHistory", "redact"]
