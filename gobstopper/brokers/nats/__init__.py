"""The NATS broker (the ``nats`` extra): subjects for rooms and channels,
JetStream for presence and history. Imported only when a ``nats://`` URL is chosen."""

from .broker import NatsBroker, parse_url, redact
from .history import NatsHistory
from .subjects import SubjectError

__all__ = ["NatsBroker", "NatsHistory", "SubjectError", "parse_url", "redact"]
