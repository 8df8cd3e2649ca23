"""A circuit breaker, so a dead LLM server costs one quick check per batch, not a timeout per
segment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Stops calling a server that keeps failing.

    Closed: calls go through. After ``failures`` consecutive failed calls it opens: no calls
    for ``cooldown`` seconds. Then it is half-open: one trial call decides; success closes it,
    failure opens it for another ``cooldown``.
    """

    def __init__(
        self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.failures = max(1, int(failures))
        self.cooldown = float(cooldown)
        self._clock = clock
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial = False  # a half-open trial call is in flight
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True while calls are refused or only a trial is allowed (an outage is suspected)."""
        return self._open_until is not None

    def allow(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return True
            if self._trial or self._clock() < self._open_until:
                return False
            self._trial = True
            return True

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._consecutive, self._open_until, self._trial = 0, None, False
                return
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                self._open_until = self._clock() + self.cooldown
                self._trial = False
