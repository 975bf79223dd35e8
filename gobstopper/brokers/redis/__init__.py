"""The Redis broker (``pip install 'gobstopper[redis]'``): ``broker.py`` subscribes,
listens and keeps presence; ``writer.py`` writes publishes and presence in order."""

from __future__ import annotations

from .broker import RedisBroker, redact

__all__ = ["RedisBroker", "redact"]
