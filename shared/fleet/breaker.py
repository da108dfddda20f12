"""A circuit breaker for an optional dependency: after a few consecutive failures, skip it for a while.

Closed: every call goes through. `failures_to_open` consecutive failures open it: calls are skipped (they cost
nothing) for `open_seconds`; then one call at a time is let through as a probe. A probe that succeeds closes
it; one that fails keeps it open for another `open_seconds`. It says nothing itself: `failed` answers whether it
just opened, and `shared.fleet.health` tells the log.
"""

import threading
import time
from collections.abc import Callable


class Breaker:
    def __init__(
        self,
        *,
        failures_to_open: int = 3,
        open_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.open_seconds = open_seconds
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Closed, with a fresh lock: also what a forked child needs (a lock held at fork stays held there)."""
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    @property
    def skipping(self) -> bool:
        """Open and not due for a probe (or one in flight): callers serve as without the dependency. Once a probe
        is due this is False, so the next caller asks, and its call is the probe, even when every request is
        otherwise answered from memory."""
        with self._lock:
            if self._open_until is None:
                return False
            return self._probing or self._clock() < self._open_until

    def allow(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._probing = False

    def failed(self) -> bool:
        """Count a failure; True when this one opened the breaker."""
        with self._lock:
            self._failures += 1
            was_open = self._open_until is not None
            if not was_open and self._failures < self.failures_to_open:
                return False
            self._open_until = self._clock() + self.open_seconds
            self._probing = False
        return not was_open
