"""Counters of one worker, readable from the app and as Prometheus text.

Plain integers, incremented in place: cheap enough for every message. Each worker
counts its own connections; a Prometheus server scrapes every worker (or sums them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Metrics"]


@dataclass
class Metrics:
    """What one worker has seen since it started.

    Attributes:
        open_connections: WebSockets open now.
        accepted: handshakes accepted.
        rejected: handshakes refused, by reason (``origin``, ``auth``, ``limit``,
            ``limit_per_ip``, ``handler``).
        messages_in, bytes_in: inbound messages and their bytes.
        messages_out, bytes_out: messages and bytes sent with ``ws.send_*`` (broadcast
            deliveries are counted apart, as ``delivered_messages`` and
            ``delivered_bytes`` in ``snapshot()``).
        rate_limited: inbound messages over the rate limit.
        idle_closed: connections closed by the idle timeout.
        closes: connections ended, by close code.
    """

    open_connections: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    rate_limited: int = 0
    idle_closed: int = 0
    closes: Counter[int] = field(default_factory=Counter)
    #: Filled in by the app: figures owned elsewhere (drops, slow consumers, broker).
    extra: Callable[[], dict[str, float]] | None = None

    def snapshot(self) -> dict[str, object]:
        """All the figures as a plain dict (for a JSON endpoint or a test)."""
        data: dict[str, object] = {
            "open_connections": self.open_connections,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "messages_in": self.messages_in,
            "bytes_in": self.bytes_in,
            "messages_out": self.messages_out,
            "bytes_out": self.bytes_out,
            "rate_limited": self.rate_limited,
            "idle_closed": self.idle_closed,
            "closes": {str(code): n for code, n in sorted(self.closes.items())},
        }
        if self.extra is not None:
            data.update(self.extra())
        return data

    def prometheus(self) -> str:
        """The counters in Prometheus' text exposition format (version 0.0.4)."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP gobstopper_{name} {help_text}")
            lines.append(f"# TYPE gobstopper_{name} {kind}")
            for labels, value in samples:
                lines.append(f"gobstopper_{name}{labels} {_number(value)}")

        metric("open_connections", "gauge", "WebSockets open now.", [("", self.open_connections)])
        metric("accepted_total", "counter", "Handshakes accepted.", [("", self.accepted)])
        metric(
            "rejected_total",
            "counter",
            "Handshakes refused, by reason.",
            [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(self.rejected.items())],
        )
        metric("messages_in_total", "counter", "Inbound messages.", [("", self.messages_in)])
        metric("bytes_in_total", "counter", "Inbound bytes.", [("", self.bytes_in)])
        metric("messages_out_total", "counter", "Outbound messages.", [("", self.messages_out)])
        metric("bytes_out_total", "counter", "Outbound bytes.", [("", self.bytes_out)])
        metric(
            "rate_limited_total",
            "counter",
            "Inbound messages over the rate limit.",
            [("", self.rate_limited)],
        )
        metric(
            "idle_closed_total",
            "counter",
            "Connections closed by the idle timeout.",
            [("", self.idle_closed)],
        )
        metric(
            "closes_total",
            "counter",
            "Connections ended, by close code.",
            [(f'{{code="{code}"}}', n) for code, n in sorted(self.closes.items())],
        )
        if self.extra is not None:
            for name, value in sorted(self.extra().items()):
                kind = "gauge" if name.startswith("broker_connected") else "counter"
                metric(
                    name if kind == "gauge" else name + "_total",
                    kind,
                    name.replace("_", " ") + ".",
                    [("", value)],
                )
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
