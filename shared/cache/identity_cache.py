"""One provider's identity cache: one upstream call per token, however many requests arrive at once.

A lookup only goes down: this process's entries, then the fleet's (Redis, when configured), then one call to the
provider, whose outcome is stored on the way back. Each concern is a piece of its own:

- `entry.Lifetimes`: how long an identity, a rejection and a local copy live, and when a hit refreshes.
- `flight.Flight`: concurrent misses for one token share one call (single flight).
- `admission.Admission`: at most KAIZALA_MAX_CONCURRENT_CALLS calls at once for every provider, a line served in
  arrival order, and 503 at once only when waiting cannot help.
- the fleet tier (`shared.fleet`): what other instances know, and fleet-wide single flight.

Keyed by the SHA-256 of the token: the raw token never sits in memory as a key. The identity is cached, not the
verdict: the policy runs on every request; identities it refused when fetched live in a bounded cache of their
own, so a flood of valid tokens for another card cannot push allowed users out. Kaizala's 429 holds back this
cache's misses until its Retry-After has passed (hits are still answered). Refreshes run in the background, never
queue (at most MAX_REFRESHES, and only with a free slot nobody waits for), and no request waits for one.
Each call runs on a daemon thread of its own; a request waits for it at most until its own deadline.
"""

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

from cachetools import TLRUCache

from .. import telemetry
from ..errors import IdentityBadResponse, IdentityUnavailable, InvalidToken, KaizalaThrottled, TooSlow
from ..forking import reset_in_child
from ..identity import Identity
from ..providers.base import IdentityProvider
from .admission import Admission, Outcome, Slot
from .entry import Entry, Lifetimes
from .flight import Flight, wait

if TYPE_CHECKING:  # the fleet tier (redis-py, cryptography) is imported only when Redis is configured
    from ..fleet import FleetCache, SharedState

log = logging.getLogger("kaizala_auth")

Source = Literal["hit", "fleet", "miss", "shared"]
Admit = Callable[[Identity], bool]
MAX_REFRESHES = 2
LEASE_PATIENCE_FLOOR_SECONDS = 0.25
LEASE_PATIENCE_COLD_SECONDS = 1.0


class Note(Protocol):
    """Told where a lookup's answer came from (telemetry's per-request note)."""

    source: str


def cache_key(token: str) -> str:
    """What the in-process cache files a token under: one-way, and never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def admit_all(_identity: Identity) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class _Call:
    """One upstream call: what it asks, until when, its slot, and its flight (None: a background refresh)."""

    key: str
    token: str = field(repr=False)
    not_after: float | None
    deadline: float
    slot: Slot
    flight: "Future[Identity] | None"


class IdentityCache:
    def __init__(
        self,
        provider: IdentityProvider,
        admission: Admission,
        *,
        lifetimes: Lifetimes = Lifetimes(),  # noqa: B008 - frozen
        maxsize: int = 10_000,
        admit: Admit = admit_all,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self.provider = provider
        self.admission = admission
        self.lifetimes = lifetimes
        self.admit = admit  # whether the policy allows an identity now: picks the cache a new entry goes to
        self.call_seconds = 5.0  # KAIZALA_TIMEOUT_SECONDS: a background refresh's deadline
        # A lambda, not time.time itself, so a test that patches time.time moves this clock too.
        self._timer = timer or (lambda: time.time())  # noqa: PLW0108
        self._flight: Flight[str, Identity] = Flight()
        self._fleet: FleetCache | None = None
        self._purges = 0  # purges received: a fleet answer read before one must not be adopted after it
        self._start()
        reset_in_child(self, IdentityCache._start)
        self.maxsize = 0
        self.resize(maxsize)

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()

    # --- configuration (the composition root calls these when the settings change) ------------------------------

    def resize(self, maxsize: int) -> None:
        """Apply a new TOKEN_CACHE_MAX_ENTRIES; a change starts from empty caches."""
        if maxsize == self.maxsize:
            return
        with self._lock:
            self.maxsize = maxsize
            self._admitted = self._entries(maxsize)
            self._refused = self._entries(maxsize)
            self._rejections: TLRUCache[str, float] = TLRUCache(
                maxsize, ttu=lambda _key, until, _now: until, timer=self._timer
            )

    def share(self, fleet: "FleetCache | None") -> None:
        """Put the fleet's cache (Redis) behind this one; None: this process's cache alone."""
        with self._lock:
            if fleet is self._fleet:
                return
            self._fleet = fleet
        if fleet is not None:
            fleet.subscribe(self._forget_purged)

    def _entries(self, maxsize: int) -> "TLRUCache[str, Entry]":
        # Kept until the identity's end in every tier; `Lifetimes.serves` decides whether this copy still serves.
        return TLRUCache(maxsize, ttu=lambda _key, entry, _now: entry.lives_until, timer=self._timer)

    def clear(self) -> None:
        """Forget every identity, rejection and Kaizala throttle (tests call it between cases)."""
        with self._lock:
            self._admitted.clear()
            self._refused.clear()
            self._rejections.clear()

    # --- what it holds -----------------------------------------------------------------------------------------

    def keys(self) -> set[str]:
        """Every key held (identities, refused identities, rejections): what a memory dump would show."""
        with self._lock:
            return {*self._admitted.keys(), *self._refused.keys(), *self._rejections.keys()}

    def holds(self, key: str) -> bool:
        """Whether an identity for the token `key` names is cached here (allowed or refused, current or not)."""
        with self._lock:
            return key in self._admitted or key in self._refused

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "identities": len(self._admitted),
                "refused": len(self._refused),
                "rejections": len(self._rejections),
            }

    # --- the lookup --------------------------------------------------------------------------------------------

    def get(
        self, token: str, deadline: float, key: str | None = None, note: "Note | None" = None
    ) -> tuple[Identity, Source]:
        """The identity for `token` and where it came from, or the provider's typed error, by `deadline`
        (time.monotonic()). `key`: `cache_key(token)`, when the caller has it already. `note` (telemetry) is told
        where the answer came from, a failure's too: hit, fleet, upstream, shared (none: refused before any)."""
        note = note or _NO_NOTE
        key = key or cache_key(token)
        fleet = self._fleet
        with self._lock:
            entry = self._entry(key)
            refresh = self._claim_refresh(key, token, entry) if entry is not None else None
            ask_fleet = entry is None and fleet is not None and key not in self._rejections
            purges = self._purges
        if entry is not None:
            note.source = "hit"
            if refresh is not None:
                self._start_call(refresh)
            return entry.identity, "hit"
        not_after = self.provider.expiry(token)  # only on a miss: a cached entry never outlives its exp
        if ask_fleet and fleet is not None and not self._flight.in_flight(key) and fleet.fits(deadline):
            note.source = "fleet"  # what the fleet knows: an identity, a rejection or a 429 that holds (shed)
            identity = self._adopt(key, not_after, fleet.lookup(token), purges)
            if identity is not None:
                return identity, "fleet"
        note.source = "hit"  # what this process remembers: a rejection, or a 429 that holds (shed)
        with self._lock:
            known = self._known(key)
        if known is not None:
            return known, "hit"
        note.source = "none"
        flight, leading = self._flight.join(key)
        if not leading:
            note.source = "shared"
            return wait(flight, deadline, self._too_slow), "shared"
        try:
            note.source = "hit"
            with self._lock:
                known = self._known(key)  # the previous leader stores before its flight ends: look once more
            if known is not None:
                self._flight.finish(key, flight, known)
                return known, "hit"
            note.source = "none"  # shed by admission, if it comes to that
            slot = self.admission.enter(self.provider.name, self.provider.service, deadline)
        except BaseException as exc:
            self._flight.finish(key, flight, error=exc)
            raise
        note.source = "upstream"
        self._start_call(_Call(key, token, not_after, deadline, slot, flight))
        return wait(flight, deadline, self._too_slow), "miss"

    def _too_slow(self) -> TooSlow:
        return IdentityUnavailable.too_slow(self.provider.service)

    def _entry(self, key: str) -> Entry | None:
        """Under the lock: the entry for `key` while it may serve."""
        entry = self._admitted.get(key)
        if entry is None:
            entry = self._refused.get(key)
        fleet = self._fleet
        skipped = fleet is not None and fleet.skipped
        if entry is None or not self.lifetimes.serves(entry, self._timer(), fleet_skipped=skipped):
            return None
        return entry

    def _known(self, key: str) -> Identity | None:
        """Under the lock: the cached identity; raises for a remembered rejection or while Kaizala's 429 holds;
        None when nothing is known here."""
        entry = self._entry(key)
        if entry is not None:
            return entry.identity
        if key in self._rejections:
            raise InvalidToken.remembered(self.provider.name)
        throttled_for = self.admission.throttled_for(self.provider.name)
        if throttled_for > 0:
            raise KaizalaThrottled.holding(math.ceil(throttled_for))
        return None

    def _adopt(self, key: str, not_after: float | None, state: "SharedState", purges: int) -> Identity | None:
        """Take what the fleet knows about the token into this process: its identity (returned), its rejection
        or Kaizala's 429 (raised, and remembered here for as long as the fleet says). `purges`: the count when
        the lookup began; an identity read before a purge that arrived since is not kept."""
        now = self._timer()
        state = state.seen_by(self.provider.name)
        if state.rejected_until is not None:
            with self._lock:
                self._forget_identity(key)
                self._rejections[key] = min(state.rejected_until, self.lifetimes.rejection_until(now))
            raise InvalidToken.remembered(self.provider.name)
        if state.throttled_until is not None:
            seconds = math.ceil(state.throttled_until - now)
            self.admission.throttle(self.provider.name, seconds)
            raise KaizalaThrottled.holding(seconds)
        if state.entry is None:
            return None
        with self._lock:
            if self._purges == purges:
                self._store(key, state.entry.identity, not_after, state.entry.expires_at)
        return state.entry.identity

    # --- background refresh ------------------------------------------------------------------------------------

    def _claim_refresh(self, key: str, token: str, entry: Entry) -> _Call | None:
        """Under the lock: a refresh of `entry` when one is due and can start now; otherwise none (never queue)."""
        now = self._timer()
        if not self.lifetimes.due(entry, now) or not self.lifetimes.extends(entry, now):
            return None
        if key in self._refreshing or len(self._refreshing) >= MAX_REFRESHES:
            return None
        if self._flight.in_flight(key):
            return None
        slot = self.admission.try_enter(self.provider.name, time.monotonic() + self.call_seconds)
        if slot is None:
            return None
        self._refreshing.add(key)
        return _Call(key, token, entry.not_after, slot.deadline, slot, flight=None)

    # --- the call ----------------------------------------------------------------------------------------------

    def _start_call(self, call: _Call) -> None:
        """Run a call on a daemon thread of its own: nothing waits for it at interpreter exit."""
        try:
            settle = telemetry.carry(self._settle)  # its spans belong to the request that started it
            threading.Thread(target=settle, args=(call,), name=f"{self.provider.name}-call", daemon=True).start()
        except RuntimeError:  # no thread could be started: give the slot back and tell the waiters
            self._end(call, IdentityUnavailable(), "unavailable")

    def _settle(self, call: _Call) -> None:
        """On the call's own thread: ask (the fleet, then) the provider, record the outcome, then tell the
        waiters and free the slot."""
        try:
            resolved = self._resolve(call)
        except KaizalaThrottled as exc:
            self.admission.throttle(self.provider.name, exc.retry_after)
            with self._lock:
                self._stop_refreshing(call)
            self._end(call, exc, "throttled")
        except InvalidToken as exc:
            with self._lock:
                if exc.lasting:
                    self._forget_identity(call.key)  # revoked since we cached it: stop trusting it now
                    self._rejections[call.key] = self.lifetimes.rejection_until(self._timer())
                else:
                    self._stop_refreshing(call)
            self._end(call, exc, "rejected")
            if call.flight is None:
                log.info("background refresh: %s no longer accepts the token", self.provider.name)
        except BaseException as exc:  # noqa: BLE001 - any failure reaches the waiters; a refresh stops refreshing
            with self._lock:
                self._stop_refreshing(call)
            self._end(call, exc, _outcome_of(exc))
            if call.flight is None:
                log.info("background refresh failed (%s); the entry expires at its time", type(exc).__name__)
        else:
            if resolved is None:  # another instance refreshes this entry for the fleet; ours expires, then re-reads
                with self._lock:
                    self._stop_refreshing(call)
                self._end(call, None, "ok")
                return
            identity, lives_until = resolved
            with self._lock:
                self._store(call.key, identity, call.not_after, lives_until)
            self._end(call, identity, "ok")
            if call.flight is None:
                log.info("background refresh: the token checked with %s again", self.provider.name)

    def _resolve(self, call: _Call) -> tuple[Identity, float | None] | None:
        """On the call's thread: the identity, and until when the fleet holds it (None: we asked the provider).
        None for a refresh that another instance is already making."""
        fleet = self._fleet

        def verify(deadline: float) -> Identity:
            return self.provider.verify(call.token, deadline)

        if fleet is None or not fleet.fits(call.deadline, round_trips=2):
            return verify(call.deadline), None  # no Redis, or no time for it as well: as without it
        from ..fleet.lease import resolve  # noqa: PLC0415 - only with Redis, like shared.fleet itself

        now = self._timer()
        with self._lock:
            entry = self._entry(call.key)
        return resolve(
            fleet,
            call.token,
            verify,
            call.deadline,
            rejection_until=self.lifetimes.rejection_until(now),
            lives_until=self.lifetimes.until(now, call.not_after),
            refreshing_until=entry.lives_until if call.flight is None and entry is not None else None,
            provider=self.provider.name,
            service=self.provider.service,
            patience=self._lease_patience(),
        )

    def _lease_patience(self) -> float:
        """How long to wait on another instance's lease: about one upstream call (twice the observed call time,
        at least LEASE_PATIENCE_FLOOR_SECONDS; LEASE_PATIENCE_COLD_SECONDS before any call was observed)."""
        typical = self.admission.health(self.provider.name).typical
        if typical is None:
            return LEASE_PATIENCE_COLD_SECONDS
        return max(LEASE_PATIENCE_FLOOR_SECONDS, 2 * typical)

    def _end(self, call: _Call, outcome: Identity | BaseException | None, result: Outcome) -> None:
        """The call is over and its outcome recorded: tell its waiters, then free its slot."""
        if call.flight is not None:
            if isinstance(outcome, BaseException):
                self._flight.finish(call.key, call.flight, error=outcome)
            else:
                self._flight.finish(call.key, call.flight, outcome)
        else:
            with self._lock:
                self._refreshing.discard(call.key)
        call.slot.release(result)

    # --- under the lock ----------------------------------------------------------------------------------------

    def _store(self, key: str, identity: Identity, not_after: float | None, lives_until: float | None) -> None:
        fleet = self._fleet
        entry = self.lifetimes.entry(
            identity,
            self._timer(),
            not_after,
            lives_until,
            user_tag=fleet.user_tag(identity.id) if fleet is not None else None,
        )
        self._forget_identity(key)
        if entry is None:
            return
        try:
            admitted = self.admit(identity)
        except Exception:  # noqa: BLE001 - a policy that cannot decide (bad settings) refuses; the request reports why
            admitted = False
        (self._admitted if admitted else self._refused)[key] = entry

    def _forget_identity(self, key: str) -> None:
        self._admitted.pop(key, None)
        self._refused.pop(key, None)

    def _stop_refreshing(self, call: _Call) -> None:
        """A refresh failed (not a rejection): no further refresh; the entry expires at its normal time."""
        if call.flight is not None:
            return
        for entries in (self._admitted, self._refused):
            entry = entries.get(call.key)
            if entry is not None:
                entries[call.key] = replace(entry, refresh_at=math.inf)

    def _forget_purged(self, user_tag: str | None) -> None:
        """A purge reached us (None: forget every identity): its user's next request is checked again."""
        with self._lock:
            self._purges += 1
            for entries in (self._admitted, self._refused):
                if user_tag is None:
                    entries.clear()
                    continue
                for key in [key for key, entry in entries.items() if entry.user_tag == user_tag]:
                    del entries[key]


class _NoNote:
    """Where a lookup with no telemetry note tells its source."""

    __slots__ = ("source",)
    source: str


_NO_NOTE: Note = _NoNote()


def _outcome_of(error: BaseException) -> Outcome:
    if isinstance(error, TooSlow):
        return "timeout"
    if isinstance(error, IdentityBadResponse):
        return "bad_response"
    return "unavailable"
