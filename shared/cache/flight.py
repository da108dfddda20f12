"""Single flight: concurrent callers for one key share one call. Go's `x/sync/singleflight` shape (one mutex, one
map, the leader calls outside the lock) with a deadline: a follower waits at most until its own deadline.

The leader records the outcome where later callers look first (a cache) *before* `finish`, so a caller arriving
in between either joins the flight or finds the outcome: it never starts a second call.
"""

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

from ..forking import reset_in_child

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Flight(Generic[K, V]):
    def __init__(self) -> None:
        self._start()
        reset_in_child(self, Flight._start)  # a child has no flights: their leaders' threads are not there

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[K, Future[V]] = {}

    def join(self, key: K) -> tuple["Future[V]", bool]:
        """The call in flight for `key`, and whether the caller leads it (and must `finish` it)."""
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                return call, False
            call = self._calls[key] = Future()
            return call, True

    def in_flight(self, key: K) -> bool:
        with self._lock:
            return key in self._calls

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def finish(self, key: K, call: "Future[V]", value: V | None = None, error: BaseException | None = None) -> None:
        """End the leader's flight, then tell its followers (nobody can join a flight that has ended)."""
        with self._lock:
            if self._calls.get(key) is call:
                del self._calls[key]
        if error is not None:
            call.set_exception(error)
        else:
            call.set_result(value)  # type: ignore[arg-type]  # V: the leader's own value


def wait(call: "Future[V]", deadline: float, too_slow: Callable[[], BaseException]) -> V:
    """The flight's value (or its error), waiting at most until `deadline` (time.monotonic())."""
    left = deadline - time.monotonic()
    if left <= 0 and not call.done():
        raise too_slow()
    try:
        return call.result(timeout=max(0.0, left))
    except TimeoutError:
        raise too_slow() from None
