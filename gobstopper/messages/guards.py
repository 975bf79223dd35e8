"""Guards: predicates on a caller's connection state (``ws.state``), composable.

Example: ``requires=all_of(has("user"), any_of(equals("role", "admin"), equals("role", "ops")))``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Guard", "all_of", "any_of", "equals", "has"]

#: A guard: a predicate on the caller's connection state (``ws.state``).
Guard = Callable[[Any], bool]


def has(name: str) -> Guard:
    """The connection's state has ``name`` set (e.g. ``has("user")``, set by an auth hook)."""
    return lambda state: getattr(state, name, None) is not None


def equals(name: str, value: Any) -> Guard:
    """The connection's state ``name`` equals ``value`` (e.g. ``equals("role", "admin")``)."""
    return lambda state: getattr(state, name, None) == value


def all_of(*guards: Guard) -> Guard:
    """Every guard passes."""
    return lambda state: all(g(state) for g in guards)


def any_of(*guards: Guard) -> Guard:
    """At least one guard passes."""
    return lambda state: any(g(state) for g in guards)
