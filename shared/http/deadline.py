"""One deadline for a whole upstream call: connects, retries, headers, 1xx answers, body and trailers.

Socket timeouts alone cannot give that: each read gets its own timeout, so an upstream that sends a byte just
before every timeout (or an endless stream of `100 Continue`) keeps a call alive for as long as it likes. Two
pieces bound it:

- `DeadlineTimeout`: urllib3 clones the timeout for every attempt, retries included; the clone's connect and read
  timeouts end at the deadline, and no attempt starts after it.
- `DeadlineAdapter` + `cut_at`: the connections a call uses are recorded while it runs, and a single watchdog
  thread shuts their sockets down at the deadline, which ends any read in progress at once. A connection the call
  has returned to the pool is no longer the call's and is never touched.
"""

import contextlib
import heapq
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.timeout import Timeout

from ..forking import reset_in_child

log = logging.getLogger("kaizala_auth")


class DeadlinePassed(Exception):
    """The deadline passed before another attempt could start."""


class DeadlineTimeout(Timeout):
    """A urllib3 Timeout that shrinks to the time left at each attempt (urllib3 clones it for every one)."""

    def __init__(self, deadline: float, connect_cap: float) -> None:
        super().__init__(connect=connect_cap, read=connect_cap)
        self.deadline = deadline
        self.connect_cap = connect_cap

    def clone(self) -> Timeout:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed()
        return Timeout(connect=min(self.connect_cap, left), read=left)


class _CallConnections:
    """The connections one call holds now; once cut, each is shut down (and any taken later, at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[Any] = set()
        self.cut = False

    def take(self, connection: Any) -> None:
        with self._lock:
            self._held.add(connection)
            if self.cut:
                _shut(connection)

    def give_back(self, connection: Any) -> None:
        with self._lock:
            self._held.discard(connection)

    def cut_now(self) -> None:
        with self._lock:
            self.cut = True
            for connection in self._held:
                _shut(connection)


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed, or never connected
        sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread; close() would not


_current = threading.local()


class _Recorded:
    """Pool mixin: a connection taken by a thread inside `cut_at` belongs to that call until it is put back."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        call: _CallConnections | None = getattr(_current, "call", None)
        if call is not None:
            call.take(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        call: _CallConnections | None = getattr(_current, "call", None)
        if call is not None and conn is not None:
            call.give_back(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _RecordedHTTPConnectionPool(_Recorded, HTTPConnectionPool):
    pass


class _RecordedHTTPSConnectionPool(_Recorded, HTTPSConnectionPool):
    pass


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools record which call holds which connection, for `cut_at`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _RecordedHTTPConnectionPool,
            "https": _RecordedHTTPSConnectionPool,
        }


@contextmanager
def cut_at(deadline: float) -> "Iterator[_CallConnections]":
    """Within this block, this thread's connections (taken through a DeadlineAdapter) are shut down at
    `deadline` (a time.monotonic() value) if the block has not ended by then; `.cut` then says so."""
    call = _CallConnections()
    _current.call = call
    cancel = _watchdog.at(deadline, call.cut_now)
    try:
        yield call
    finally:
        cancel()
        _current.call = None


class _Watchdog:
    """One daemon thread that runs each action at its time: no thread per call, nothing waited on at exit."""

    def __init__(self) -> None:
        self._start()
        reset_in_child(self, _Watchdog._start)  # the parent's thread does not exist in a forked child

    def _start(self) -> None:
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def at(self, when: float, action: Callable[[], None]) -> Callable[[], None]:
        """Run `action` at `when` (time.monotonic()); returns the cancel function."""
        slot: list[Callable[[], None] | None] = [action]
        with self._wake:
            heapq.heappush(self._due, (when, next(self._order), slot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kaizala-deadlines", daemon=True)
                self._thread.start()
            if self._due[0][2] is slot:
                self._wake.notify()

        def cancel() -> None:
            slot[0] = None  # left in the heap; dropped when its time comes

        return cancel

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _when, _order, slot = heapq.heappop(self._due)
            action = slot[0]
            if action is not None:
                try:
                    action()
                except Exception:  # the watchdog must outlive any one action
                    log.exception("deadline action failed")


_watchdog = _Watchdog()
