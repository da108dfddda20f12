"""Admission: how many upstream calls run at once (the slots), and the line of misses waiting for one.

The rule, in one place ("Admission" in docs/how-it-works.md says why this one):

- At most `limit` calls run at once, for every provider together (KAIZALA_MAX_CONCURRENT_CALLS).
- A miss that finds a free slot and nobody waiting calls at once. Otherwise it joins the line, which is served in
  arrival order: a freed slot is handed to the head of the line, never taken by a newcomer (no barging).
- A miss waits as long as it can still be answered within its own deadline. It is answered 503 at once (shed)
  only when waiting cannot help:
  - `busy`: its expected wait (its place in line / the slots that are moving, in whole rounds, x the observed
    call time) plus its own call would end past its deadline;
  - `unhealthy`: the upstream is failing (its last calls failed) or hanging (every slot is held by a call that has
    run far longer than calls usually take, so nobody can say when one frees).
  Kaizala's 429 (`throttled`) is judged before a miss gets here (the cache holds it back).
- A waiter judges its chances again whenever the line moves and at least every CHECK_SECONDS, so a line behind an
  upstream that starts hanging empties within about OVERDUE_FLOOR_SECONDS: the worker threads those misses held
  are free again for cached users.

This is a bounded-by-time queue (Polly's bulkhead with a queue, the AWS Builders' Library's "queue only as long
as the answer is still useful") with the observed latency deciding how long is useful (as Envoy's adaptive
concurrency and Netflix's Gradient2 measure it), but with a fixed limit: the slots protect the worker's threads
and the upstream's own limits, which a latency-driven limit would not know.
"""

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .. import messages as say
from ..errors import IdentityUnavailable
from ..forking import reset_in_child

Outcome = Literal["ok", "rejected", "throttled", "unavailable", "bad_response", "timeout"]
FAILED: frozenset[Outcome] = frozenset({"unavailable", "bad_response", "timeout"})

TYPICAL_WEIGHT = 0.2  # each completed call moves the observed call time this far towards itself
OVERDUE_FACTOR = 4.0  # a call this many times longer than usual is overdue...
OVERDUE_FLOOR_SECONDS = 0.5  # ...and never before this (a cold process has no observed call time yet)
FAILURES_TO_SHED = 2  # consecutive failed calls after which waiting for a slot cannot help
FAILING_SECONDS = 5.0  # how long such a failure streak counts without a new call
CHECK_SECONDS = 0.05
BUSY_RETRY_AFTER_SECONDS = 1


class Shed(IdentityUnavailable):
    """A miss answered 503 without an upstream call; `reason` says why (busy, unhealthy, throttled)."""

    def __init__(self, message: str, reason: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason
        self.shed_reason = reason


@dataclass(slots=True)
class Health:
    """How one upstream service is doing, from this process's calls to it."""

    typical: float | None = None  # seconds a call usually takes (a moving average); None before the first
    failures: int = 0  # consecutive failed calls
    failed_at: float = -math.inf
    throttled_until: float = -math.inf  # it answered 429: nothing is sent to it before then

    def record(self, seconds: float, outcome: Outcome, now: float) -> None:
        if outcome in FAILED:
            self.failures += 1
            self.failed_at = now
            return
        self.failures = 0
        if outcome != "throttled":  # a 429 comes back fast and says nothing about how long an answer takes
            self.typical = seconds if self.typical is None else self.typical + TYPICAL_WEIGHT * (seconds - self.typical)

    def failing(self, now: float) -> bool:
        return self.failures >= FAILURES_TO_SHED and now - self.failed_at < FAILING_SECONDS

    def refuses(self, now: float) -> bool:
        """Whether nobody should wait for a call to it now (throttled or failing)."""
        return now < self.throttled_until or self.failing(now)

    def overdue_after(self) -> float:
        return max(OVERDUE_FLOOR_SECONDS, OVERDUE_FACTOR * (self.typical or 0.0))


@dataclass(eq=False, slots=True)
class Slot:
    """One upstream call's place among the slots. `release` it exactly once, with the call's outcome."""

    provider: str
    started: float
    deadline: float
    _admission: "Admission" = field(repr=False)

    def release(self, outcome: Outcome) -> None:
        self._admission._release(self, outcome)


@dataclass(eq=False, slots=True)
class _Ticket:
    provider: str
    service: str
    deadline: float
    granted: threading.Event = field(default_factory=threading.Event)
    slot: Slot | None = None


class Admission:
    def __init__(self, limit: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._start()
        reset_in_child(self, Admission._start)  # a child has no calls in flight and nobody in line

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Slot] = set()
        self._line: deque[_Ticket] = deque()
        self._health: dict[str, Health] = {}

    def resize(self, limit: int) -> None:
        """A new KAIZALA_MAX_CONCURRENT_CALLS: a higher one admits waiters at once; a lower one as calls end."""
        with self._lock:
            self.limit = limit
            self._hand_over()

    def forget(self) -> None:
        """Forget what calls have shown about each upstream's health (tests, between cases)."""
        with self._lock:
            self._health.clear()

    @property
    def busy(self) -> int:
        """Upstream calls running now (every provider's)."""
        with self._lock:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._line)

    def health(self, provider: str) -> Health:
        with self._lock:
            return self._health_of(provider)

    def throttle(self, provider: str, seconds: float) -> None:
        """The upstream asked (429) for nothing to be sent before `seconds` have passed: the line is told at once."""
        with self._lock:
            health = self._health_of(provider)
            health.throttled_until = max(health.throttled_until, self._clock() + seconds)
            for ticket in [ticket for ticket in self._line if ticket.provider == provider]:
                self._line.remove(ticket)
                ticket.granted.set()  # woken without a slot: it sheds itself

    def throttled_for(self, provider: str) -> float:
        """Seconds left of the upstream's 429 (0 when none holds)."""
        with self._lock:
            return max(0.0, self._health_of(provider).throttled_until - self._clock())

    def enter(self, provider: str, service: str, deadline: float) -> Slot:
        """A slot for one call to `service` (provider `provider`), waiting in line while that can still be
        answered by `deadline` (time.monotonic()); Shed when it cannot."""
        ticket = _Ticket(provider, service, deadline)
        with self._lock:
            if len(self._running) < self.limit and not self._line:
                return self._occupy(provider, deadline)
            self._judge(ticket, position=len(self._line))  # raises: not worth joining the line at all
            self._line.append(ticket)
        while True:
            left = deadline - self._clock()
            ticket.granted.wait(max(0.0, min(CHECK_SECONDS, left)))
            with self._lock:
                if ticket.slot is not None:
                    return ticket.slot
                waiting = ticket in self._line  # False: woken without a slot (its upstream throttles or fails)
                try:
                    if self._clock() >= deadline:
                        raise Shed(say.too_slow(service), "busy", BUSY_RETRY_AFTER_SECONDS)
                    self._judge(ticket, position=self._line.index(ticket) if waiting else 0)
                except Shed:
                    if waiting:
                        self._line.remove(ticket)
                    raise
                if not waiting:  # no longer failing by the time it looked: back in line, at the front
                    ticket.granted.clear()
                    self._line.appendleft(ticket)
                    self._hand_over()

    def try_enter(self, provider: str, deadline: float) -> Slot | None:
        """A slot now, if one is free, nobody waits for it and no 429 holds (background refreshes never queue)."""
        with self._lock:
            throttled = self._clock() < self._health_of(provider).throttled_until
            if len(self._running) < self.limit and not self._line and not throttled:
                return self._occupy(provider, deadline)
            return None

    # --- under the lock ----------------------------------------------------------------------------------------

    def _health_of(self, provider: str) -> Health:
        health = self._health.get(provider)
        if health is None:
            health = self._health[provider] = Health()
        return health

    def _occupy(self, provider: str, deadline: float) -> Slot:
        slot = Slot(provider, self._clock(), deadline, self)
        self._running.add(slot)
        return slot

    def _judge(self, ticket: _Ticket, position: int) -> None:
        """Raise Shed when waiting in line at `position` (waiters ahead) cannot help `ticket`."""
        now = self._clock()
        health = self._health_of(ticket.provider)
        if now < health.throttled_until:
            raise Shed(
                say.throttled(ticket.service),
                "throttled",
                math.ceil(health.throttled_until - now),
            )
        if health.failing(now):
            raise Shed(say.failing(ticket.service), "unhealthy", self._retry_after())
        moving = sum(1 for slot in self._running if now - slot.started < self._health_of(slot.provider).overdue_after())
        moving += max(0, self.limit - len(self._running))  # free slots (a lowered limit can make this negative)
        if moving <= 0:
            raise Shed(say.hanging(ticket.service), "unhealthy", self._retry_after())
        call = health.typical or 0.0
        # Whole rounds: the waiters ahead and this one leave the line `moving` at a time, one call apart.
        expected = math.ceil((position + 1) / moving) * call + call
        if now + expected + CHECK_SECONDS > ticket.deadline:
            raise Shed(say.busy(ticket.service), "busy", BUSY_RETRY_AFTER_SECONDS)

    def _retry_after(self) -> int:
        """When a slot is sure to be free again: the earliest deadline among the calls running (at least 1 s)."""
        ends = [slot.deadline for slot in self._running]
        return max(1, math.ceil(min(ends) - self._clock())) if ends else BUSY_RETRY_AFTER_SECONDS

    def _release(self, slot: Slot, outcome: Outcome) -> None:
        with self._lock:
            if slot not in self._running:
                return  # released twice, or started before a fork
            self._running.discard(slot)
            now = self._clock()
            self._health_of(slot.provider).record(now - slot.started, outcome, now)
            self._hand_over()

    def _hand_over(self) -> None:
        """Give free slots to the head of the line, in arrival order. A waiter whose upstream throttles or fails
        gets no slot: it is woken to hear so (newcomers that find a free slot still probe whether it has recovered)."""
        now = self._clock()
        while self._line and len(self._running) < self.limit:
            ticket = self._line.popleft()
            if not self._health_of(ticket.provider).refuses(now):
                ticket.slot = self._occupy(ticket.provider, ticket.deadline)
            ticket.granted.set()
