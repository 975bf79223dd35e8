"""Channel history: stores of positioned publications (``base.py`` the contract,
``memory.py`` the in-memory ring; the Redis broker brings a store of Redis streams,
``brokers/redis/history.py``)."""

from __future__ import annotations

from .base import HistoryStore, Position, Publication, Window
from .memory import MemoryHistory

__all__ = ["HistoryStore", "MemoryHistory", "Position", "Publication", "Window"]
