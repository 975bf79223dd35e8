"""The client's connection life cycle as a pure state machine: no sockets, no asyncio.

::

    idle --start--> connecting --opened--> renewing --renewed--> ready
                        ^                      |                   |
                        +-------- lost --------+-------------------+
    any --close--> closed --start--> connecting

``connecting`` covers both dialling and the backoff wait between attempts; a refused
attempt is ``lost`` from ``connecting`` back to ``connecting``. Each opened connection
gets the next generation number (1, 2, ...), so work begun on one connection (renewing
its subscriptions) can tell, when it finishes, whether that connection is still the
current one: ``renewed`` of an old generation is ignored, never an error.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ..errors import IllegalTransition

__all__ = ["ConnectionState", "IllegalTransition", "Phase"]


class Phase(enum.Enum):
    """Where the client's connection stands."""

    IDLE = "idle"  # never started
    CONNECTING = "connecting"  # no connection: dialling, or waiting to dial again
    RENEWING = "renewing"  # connected, renewing subscriptions (calls may be sent)
    READY = "ready"  # connected with its subscriptions renewed
    CLOSED = "closed"  # stopped by close() (start() begins again)


class ConnectionState:
    """The phase and the current connection's generation.

    Args:
        on_change: called with the new phase after every transition that changes the
            phase or the generation (the asyncio layer wakes its waiters there).
    """

    __slots__ = ("_on_change", "generation", "phase")

    def __init__(self, on_change: Callable[[Phase], None] | None = None) -> None:
        self.phase = Phase.IDLE
        #: Connections opened so far; the current (or last) one's number.
        self.generation = 0
        self._on_change = on_change

    def __repr__(self) -> str:
        return f"<ConnectionState {self.phase.value} generation={self.generation}>"

    @property
    def connected(self) -> bool:
        """There is a connection to send on (renewing or ready)."""
        return self.phase in (Phase.RENEWING, Phase.READY)

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def current(self, generation: int) -> bool:
        """Whether connection ``generation`` is the one open now."""
        return self.connected and self.generation == generation

    def ready_on(self, connection: int | None) -> bool:
        """Ready, and on the ``connection``-th connection or a later one (None: any)."""
        return self.ready and (connection is None or self.generation >= connection)

    # -- transitions ------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (from idle, or again after close).

        Raises:
            IllegalTransition: already started.
        """
        self._require("start", Phase.IDLE, Phase.CLOSED)
        self._enter(Phase.CONNECTING)

    def opened(self) -> int:
        """A connection opened: renew on it. Returns its generation.

        Raises:
            IllegalTransition: not connecting (closed meanwhile, or already connected).
        """
        self._require("opened", Phase.CONNECTING)
        self.generation += 1
        self._enter(Phase.RENEWING)
        return self.generation

    def renewed(self, generation: int) -> bool:
        """Connection ``generation`` renewed its subscriptions: ready, if it is still the
        current connection. Returns whether it was (False: lost or closed meanwhile).

        Raises:
            IllegalTransition: the current connection is ready already.
        """
        if not self.current(generation):
            return False
        self._require("renewed", Phase.RENEWING)
        self._enter(Phase.READY)
        return True

    def lost(self) -> None:
        """The connection dropped, or an attempt was refused: connecting again. After
        close() this changes nothing (closing is what dropped it).

        Raises:
            IllegalTransition: never started.
        """
        if self.phase is Phase.CLOSED:
            return
        self._require("lost", Phase.CONNECTING, Phase.RENEWING, Phase.READY)
        self._enter(Phase.CONNECTING)

    def close(self) -> None:
        """Stop, from any phase (closing twice is harmless)."""
        self._enter(Phase.CLOSED)

    def _require(self, event: str, *allowed: Phase) -> None:
        if self.phase not in allowed:
            raise IllegalTransition(f"{event} while {self.phase.value}")

    def _enter(self, phase: Phase) -> None:
        changed = phase is not self.phase or phase is Phase.RENEWING
        self.phase = phase
        if changed and self._on_change is not None:
            self._on_change(phase)
