"""A circuit breaker for an optional dependency: after a few consecutive failures, skip it for a while.

Closed: every call goes through. `failures_to_open` consecutive failures open it: calls are skipped (they cost
nothing) for `open_seconds`; then one call at a time is let through as a probe. A probe that succeeds closes
it; one that fails keeps it open for another `open_seconds`. The log gets one WARNING when it opens and one when it
closes, never one per call.
"""

import logging
import threading
import time
from collections.abc import Callable

from .. import telemetry

log = logging.getLogger("kaizala_auth")


class Breaker:
    def __init__(
        self,
        name: str,
        *,
        failures_to_open: int = 3,
        open_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name  # what the log calls the dependency; never anything secret
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
            was_open = self._open_until is not None
            self._failures = 0
            self._open_until = None
            self._probing = False
        if was_open:
            log.warning("%s answers again: using it again", self.name)
            telemetry.fleet_changed(available=True, cause="recovered")

    def failed(self, error: BaseException) -> bool:
        """Count a failure; True when this one opened the breaker."""
        with self._lock:
            self._failures += 1
            was_open = self._open_until is not None
            if not was_open and self._failures < self.failures_to_open:
                return False
            self._open_until = self._clock() + self.open_seconds
            self._probing = False
        if not was_open:
            # The type only: an exception's text may quote a command or a connection string.
            log.warning(
                "%s failed %d times in a row (%s): skipping it, trying again every %g s",
                self.name,
                self.failures_to_open,
                type(error).__name__,
                self.open_seconds,
            )
            telemetry.fleet_changed(available=False, cause=type(error).__name__)
        return not was_open
