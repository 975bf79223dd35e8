"""The Redis broker (``pip install 'gobstopper[redis]'``): ``broker.py`` subscribes,
listens and keeps presence; ``writer.py`` writes publishes and presence in order;
``history.py`` keeps channel history in Redis streams."""

from __future__ import annotations

from .broker import RedisBroker, redact
from .history import RedisHistory

__all__ = ["RedisBroker", "RedisHistory", "redact"]
