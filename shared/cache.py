"""The identity cache: one upstream call per token, however many requests arrive at once, none waited on for long.

- Keyed by the SHA-256 of the token: the raw token never sits in memory as a key.
- Two tiers when Redis is configured (`share`): this process's cache in front, the fleet's behind it. A local miss
  asks Redis before Kaizala; a Redis miss leads (or waits for) one Kaizala call for the whole fleet and stores the
  result in both tiers. Local copies then live at most `local_seconds` and never past the fleet's entry, and a
  purge published by `python -m shared.purge` drops them at once. While Redis is skipped (it failed), a copy past
  `local_seconds` still serves, as without Redis, and the hit re-checks it with Kaizala in the background.
- Caches the identity, not the verdict: the allowlists are applied to every request by the policy. Identities the
  policy refused when they were fetched live in a bounded cache of their own, so a flood of valid tokens for
  another card cannot push allowed users out.
- An entry lives `TOKEN_CACHE_SECONDS` (a lower setting applies at once), never past the token's own `exp` (wall
  clock, like `exp` itself).
- Tokens Kaizala rejected are remembered briefly, in a separate bounded cache. Upstream failures are never cached.
- Single flight: concurrent misses for one key share one upstream call. Each call runs on a daemon thread of its
  own; every request waits for it at most until its own deadline, then answers `identity_unavailable`.
- At most `max_calls` upstream calls at once per process: a miss that finds no free slot within a short wait is
  answered `identity_unavailable` at once, so a hanging Kaizala cannot hold every worker thread.
- Refresh-ahead: a hit in the last part of an entry's life answers at once and refreshes the entry in the
  background. Refreshes never queue: at most MAX_REFRESHES run at once and one that cannot start is skipped (the
  entry then expires normally). No request ever waits for a refresh.
- Kaizala's 429 is respected: until its Retry-After has passed, misses answer `identity_unavailable` with the
  time left and nothing is sent upstream (hits are still answered).
- Fork-safe: a forked child starts with no calls in flight (their threads do not exist in the child); the Kaizala
  client gives it its own connections too (`shared.kaizala`).
"""

import hashlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from cachetools import TLRUCache

from .errors import IdentityUnavailable, InvalidToken, KaizalaThrottled
from .identity import KAIZALA, TEAMS, Identity, Provider

if TYPE_CHECKING:  # the fleet tier (redis-py, cryptography) is imported only when Redis is configured
    from .fleet import FleetCache, SharedState

log = logging.getLogger("kaizala_auth")

Source = Literal["hit", "fleet", "miss", "shared"]
Fetch = Callable[[float], Identity]  # takes the deadline, a time.monotonic() value
Admit = Callable[[Identity], bool]

REJECTION_SECONDS = 30.0
REFRESH_AHEAD_FRACTION = 0.2  # refresh during the last 20% of an entry's life
MAX_REFRESHES = 2
SLOT_WAIT_SECONDS = 0.25
BUSY_RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True, slots=True)
class _Lifetime:
    seconds: float
    not_after: float | None  # the token's exp, when it has one

    def expires_at(self, now: float) -> float:
        end = now + self.seconds
        return end if self.not_after is None else min(end, self.not_after)


@dataclass(frozen=True, slots=True)
class _Entry:
    identity: Identity
    refresh_at: float
    expires_at: float  # of this process's copy
    lives_until: float  # of the identity in every tier (the fleet's entry); expires_at without Redis
    stored_at: float  # a lower TOKEN_CACHE_SECONDS applies to entries already stored, at once
    not_after: float | None
    user_tag: str | None = None  # the fleet's one-way tag of the user id, to match purges


@dataclass(frozen=True, slots=True)
class _Call:
    """One upstream call: what it asks, how long its answer may live, and who waits for it (None: a refresh)."""

    key: str
    token: str = field(repr=False)
    fetch: Fetch
    lifetime: _Lifetime
    deadline: float
    admit: Admit
    waiters: "Future[Identity] | None"


_SERVICE = {KAIZALA: "Kaizala", TEAMS: "Microsoft Entra ID"}


def cache_key(token: str) -> str:
    """What the in-process cache files a token under: one-way, and never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def _admit_all(_identity: Identity) -> bool:
    return True


class CallSlots:
    """The process's upstream calls in flight, counted across every cache that shares it (one per provider), so
    KAIZALA_MAX_CONCURRENT_CALLS caps them all together. Its lock guards those caches too."""

    def __init__(self) -> None:
        self.reset()
        _survive_fork_holding(self)

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.freed = threading.Condition(self.lock)
        self.busy = 0  # upstream calls in flight, refreshes included


class IdentityCache:
    def __init__(
        self,
        maxsize: int = 10_000,
        timer: Callable[[], float] | None = None,
        provider: Provider = KAIZALA,
        slots: CallSlots | None = None,
    ) -> None:
        self.provider = provider  # who checks the tokens cached here: one cache per provider
        self._slots = slots or CallSlots()
        # A lambda, not time.time itself, so a test that patches time.time moves this clock too.
        self._timer = timer or (lambda: time.time())  # noqa: PLW0108
        self._throttled_until = 0.0  # time.monotonic(): Kaizala asked us (429) to send nothing before then
        self._fleet: FleetCache | None = None
        self._local_seconds = math.inf
        self._purges = 0  # purges received: a fleet answer read before one must not be adopted after it
        self._start_without_calls()
        _survive_fork(self)
        self.maxsize = 0
        self.resize(maxsize)

    def _start_without_calls(self) -> None:
        self._lock = self._slots.lock
        self._calls: dict[str, Future[Identity]] = {}  # upstream calls made for requests, by key
        self._refreshing: set[str] = set()

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

    def share(self, fleet: "FleetCache | None", local_seconds: float) -> None:
        """Put the fleet's cache (Redis) behind this one, local copies living at most `local_seconds`; None: this
        process's cache alone, as without Redis."""
        if fleet is self._fleet and (fleet is None or local_seconds == self._local_seconds):
            return  # the settings did not change: every request calls this, so it must cost nothing
        with self._lock:
            self._local_seconds = local_seconds if fleet is not None else math.inf
            if fleet is self._fleet:
                return
            self._fleet = fleet
        if fleet is not None:
            fleet.subscribe(self._forget_purged)

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

    def _entries(self, maxsize: int) -> "TLRUCache[str, _Entry]":
        # Kept until the identity's end in every tier; `_entry` decides whether this process's copy still serves.
        return TLRUCache(maxsize, ttu=lambda _key, entry, _now: entry.lives_until, timer=self._timer)

    def clear(self) -> None:
        """Forget every identity, rejection and Kaizala throttle (tests call it between cases)."""
        with self._lock:
            self._throttled_until = 0.0
            self._admitted.clear()
            self._refused.clear()
            self._rejections.clear()

    def keys(self) -> set[str]:
        """Every key held (identities, refused identities, rejections): what a memory dump would show."""
        with self._lock:
            return {*self._admitted.keys(), *self._refused.keys(), *self._rejections.keys()}

    def holds(self, key: str) -> bool:
        """Whether an identity for the token `key` names (`cache_key(token)`) is cached here (allowed or refused
        by the policy, current or not)."""
        with self._lock:
            return key in self._admitted or key in self._refused

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "identities": len(self._admitted),
                "refused": len(self._refused),
                "rejections": len(self._rejections),
            }

    def in_flight(self) -> int:
        """Upstream calls running now (refreshes included)."""
        with self._lock:
            return self._slots.busy

    def get(
        self,
        token: str,
        fetch: Fetch,
        *,
        seconds: float,
        timeout: float,
        max_calls: int,
        not_after: Callable[[], float | None] = lambda: None,
        refresh_ahead: bool = True,
        admit: Admit = _admit_all,
        key: str | None = None,
    ) -> tuple[Identity, Source]:
        """The identity for `token`, from a cache or from `fetch(deadline)` (whose typed errors propagate).

        Answers within `timeout` seconds. `not_after()` gives the token's exp and runs only on a miss: a cached
        entry never outlives the exp it was stored with, so on a hit the token is known to be unexpired.
        `admit(identity)` says whether the policy allows the identity now; it picks the cache a new entry goes to.
        `key`: `cache_key(token)`, when the caller has it already.
        """
        deadline = time.monotonic() + timeout
        key = key or cache_key(token)
        fleet = self._fleet
        with self._lock:
            entry = self._entry(key, seconds)
            refresh = None
            if entry is not None and (
                (refresh_ahead and self._timer() >= entry.refresh_at) or self._timer() >= entry.expires_at
            ):
                due = _Call(key, token, fetch, _Lifetime(seconds, entry.not_after), deadline, admit, waiters=None)
                refresh = self._claim_refresh(due, entry, max_calls)
            # Nothing here, nor in flight, nor refused: the fleet may know (one Redis round trip, made below).
            ask_fleet = entry is None and fleet is not None and key not in self._calls and key not in self._rejections
            purges = self._purges
        if entry is not None:
            if refresh is not None:
                self._start(refresh)
            return entry.identity, "hit"
        lifetime = _Lifetime(seconds, not_after())
        if ask_fleet and fleet is not None and deadline - time.monotonic() > fleet.timeout:
            shared = _Call(key, token, fetch, lifetime, deadline, admit, waiters=None)
            identity = self._adopt(shared, fleet.lookup(token), purges)
            if identity is not None:
                return identity, "fleet"
        waiters: Future[Identity] = Future()
        call = _Call(key, token, fetch, lifetime, deadline, admit, waiters)
        with self._lock:
            found = self._join_or_claim(call, waiters, max_calls)
        if isinstance(found, Identity):
            return found, "hit"
        if found is not waiters:
            return _wait(found, deadline), "shared"
        self._start(call)
        return _wait(waiters, deadline), "miss"

    def _entry(self, key: str, seconds: float) -> _Entry | None:
        """Under the lock: the entry for `key`, unless stored longer ago than TOKEN_CACHE_SECONDS (`seconds`) is
        now: lowering the setting applies to entries already stored, at once."""
        entry = self._admitted.get(key)
        if entry is None:
            entry = self._refused.get(key)
        now = self._timer()
        if entry is None or entry.stored_at + seconds <= now:
            return None
        if now < entry.expires_at:
            return entry
        # This process's copy outlived TOKEN_CACHE_LOCAL_SECONDS. While Redis is skipped (it failed) it still
        # serves, as it would without Redis, and the hit re-checks it in the background; otherwise: ask Redis.
        fleet = self._fleet
        return entry if fleet is not None and fleet.breaker.is_open else None

    def _join_or_claim(self, call: _Call, waiters: "Future[Identity]", max_calls: int) -> "Identity | Future[Identity]":
        """Under the lock: the cached identity, the call already in flight for the key, or (claimed: a slot is
        taken and the call registered) the new call's own future. Waits a short while for a free slot."""
        slot_deadline = min(call.deadline, time.monotonic() + SLOT_WAIT_SECONDS)
        while True:
            known = self._known(call)  # the leader may have finished since we last looked
            if known is not None:
                return known
            if self._slots.busy < max_calls:
                self._slots.busy += 1
                self._calls[call.key] = waiters
                return waiters
            left = slot_deadline - time.monotonic()
            if left <= 0:
                raise IdentityUnavailable(
                    f"Too many checks with {_SERVICE[self.provider]} are in progress. Try again shortly.",
                    retry_after=BUSY_RETRY_AFTER_SECONDS,
                )
            self._slots.freed.wait(left)

    def _known(self, call: _Call) -> "Identity | Future[Identity] | None":
        """Under the lock: the cached identity or the call in flight for the key; raises for a remembered
        rejection or while Kaizala's 429 holds; None when nothing is known here."""
        entry = self._entry(call.key, call.lifetime.seconds)
        if entry is not None:
            return entry.identity
        if call.key in self._rejections:
            raise InvalidToken.remembered(self.provider)
        in_flight = self._calls.get(call.key)
        if in_flight is not None:
            return in_flight
        throttled_for = self._throttled_until - time.monotonic()
        if throttled_for > 0:
            raise KaizalaThrottled.holding(math.ceil(throttled_for))
        return None

    def _adopt(self, call: _Call, state: "SharedState", purges: int) -> Identity | None:
        """Take what the fleet knows about the token into this process: its identity (returned), its rejection
        or Kaizala's 429 (raised, and remembered here for as long as the fleet says). `purges`: the count when
        the lookup began; an identity read before a purge that arrived since is not kept."""
        now = self._timer()
        state = state.seen_by(self.provider)
        if state.rejected_until is not None:
            with self._lock:
                self._forget_identity(call.key)
                self._rejections[call.key] = min(state.rejected_until, now + REJECTION_SECONDS)
            raise InvalidToken.remembered(self.provider)
        if state.throttled_until is not None:
            seconds = math.ceil(state.throttled_until - now)
            with self._lock:
                self._throttled_until = max(self._throttled_until, time.monotonic() + seconds)
            raise KaizalaThrottled.holding(seconds)
        if state.entry is None:
            return None
        with self._lock:
            if self._purges == purges:
                self._store(call, state.entry.identity, state.entry.expires_at)
        return state.entry.identity

    def _claim_refresh(self, call: _Call, entry: _Entry, max_calls: int) -> _Call | None:
        """Under the lock: claim a background refresh when one can start now; otherwise skip it (never queue)."""
        if (
            call.lifetime.expires_at(self._timer()) <= entry.lives_until  # a refresh must be able to extend it
            or call.key in self._refreshing
            or call.key in self._calls
            # A copy past its local life (served only while Redis is skipped) is re-checked within the whole cap.
            or len(self._refreshing) >= (MAX_REFRESHES if self._timer() < entry.expires_at else max_calls)
            or self._slots.busy >= max_calls
            or self._throttled_until > time.monotonic()
        ):
            return None
        self._refreshing.add(call.key)
        self._slots.busy += 1  # refreshes count against the process's upstream calls, but never wait for a slot
        return call

    def _start(self, call: _Call) -> None:
        """Run a claimed call on a daemon thread of its own: nothing waits for it at interpreter exit."""
        try:
            threading.Thread(target=self._settle, args=(call,), name="kaizala-call", daemon=True).start()
        except RuntimeError:  # no thread could be started: give the slot back and tell the waiters
            self._finish(call, lambda: None)
            _fail(call, IdentityUnavailable())

    def _settle(self, call: _Call) -> None:
        """On the call's own thread: ask upstream, record the outcome, free the slot, then tell every waiter."""
        try:
            resolved = self._resolve(call)
        except KaizalaThrottled as exc:
            retry_after = exc.retry_after
            self._finish(call, lambda: self._throttle(retry_after, call))
            _fail(call, exc)
        except InvalidToken as exc:
            if exc.lasting:
                self._finish(call, lambda: self._remember_rejection(call))
            else:  # refused for now only: nothing is remembered, and a refresh simply stops
                self._finish(call, lambda: self._stop_refreshing(call.key) if call.waiters is None else None)
            _fail(call, exc)
            if call.waiters is None:
                log.info("background refresh: %s no longer accepts the token; its entry is dropped", self._checker)
        except BaseException as exc:  # noqa: BLE001 - any failure reaches the waiters; a refresh stops refreshing
            self._finish(call, lambda: self._stop_refreshing(call.key) if call.waiters is None else None)
            _fail(call, exc)
            if call.waiters is None:
                log.info("background refresh failed (%s); the entry expires at its time", type(exc).__name__)
        else:
            if resolved is None:  # another instance refreshes this entry for the fleet; ours expires, then re-reads
                self._finish(call, lambda: self._stop_refreshing(call.key))
                return
            identity, lives_until = resolved
            self._finish(call, lambda: self._store(call, identity, lives_until))
            if call.waiters is not None:
                call.waiters.set_result(identity)
            else:
                log.info("background refresh: user %s checked with %s again", identity.id, self._checker)

    def _resolve(self, call: _Call) -> tuple[Identity, float | None] | None:
        """On the call's thread: the identity, and until when the fleet holds it (None: we asked Kaizala).
        None for a refresh that another instance is already making."""
        fleet = self._fleet
        if fleet is None:
            return call.fetch(call.deadline), None
        from .fleet_flight import resolve  # noqa: PLC0415 - only with Redis, like shared.fleet itself

        if call.deadline - time.monotonic() < 2 * fleet.timeout:
            return call.fetch(call.deadline), None  # no time for Redis as well: as without it
        with self._lock:
            entry = self._entry(call.key, call.lifetime.seconds)
        return resolve(
            fleet,
            call.token,
            call.fetch,
            call.deadline,
            rejection_until=self._timer() + min(REJECTION_SECONDS, call.lifetime.seconds),
            lives_until=call.lifetime.expires_at(self._timer()),
            refreshing_until=entry.lives_until if call.waiters is None and entry is not None else None,
            provider=self.provider,
        )

    @property
    def _checker(self) -> str:
        """Who checks this cache's tokens, for log lines."""
        return "entra" if self.provider == TEAMS else "kaizala"

    def _finish(self, call: _Call, record: Callable[[], None]) -> None:
        """One locked step: record the outcome and free the slot, so no request sees neither the call nor its
        outcome (which would make it call upstream a second time)."""
        with self._lock:
            try:
                record()
            finally:
                self._slots.busy -= 1
                self._slots.freed.notify()
                if call.waiters is None:
                    self._refreshing.discard(call.key)
                else:
                    self._calls.pop(call.key, None)

    def _store(self, call: _Call, identity: Identity, lives_until: float | None = None) -> None:
        """Under the lock. `lives_until`: the fleet's entry, when the identity came from there."""
        now = self._timer()
        own = call.lifetime.expires_at(now)
        lives_until = own if lives_until is None else min(lives_until, own)
        if lives_until <= now:
            return
        fleet = self._fleet
        entry = _Entry(
            identity,
            refresh_at=lives_until - call.lifetime.seconds * REFRESH_AHEAD_FRACTION,
            expires_at=min(lives_until, now + self._local_seconds),
            lives_until=lives_until,
            stored_at=now,
            not_after=call.lifetime.not_after,
            user_tag=fleet.user_tag(identity.id) if fleet is not None else None,
        )
        try:
            admitted = call.admit(identity)
        except Exception:  # noqa: BLE001 - a policy that cannot decide (bad settings) refuses; the request reports why
            admitted = False
        self._forget_identity(call.key)
        (self._admitted if admitted else self._refused)[call.key] = entry

    def _forget_identity(self, key: str) -> None:
        self._admitted.pop(key, None)
        self._refused.pop(key, None)

    def _remember_rejection(self, call: _Call) -> None:
        self._forget_identity(call.key)  # revoked since we cached it: stop trusting it now
        self._rejections[call.key] = self._timer() + min(REJECTION_SECONDS, call.lifetime.seconds)

    def _throttle(self, seconds: int, call: _Call) -> None:
        self._throttled_until = max(self._throttled_until, time.monotonic() + seconds)
        if call.waiters is None:
            self._stop_refreshing(call.key)

    def _stop_refreshing(self, key: str) -> None:
        """A refresh failed (not a rejection): no further refresh; the entry expires at its normal time."""
        for entries in (self._admitted, self._refused):
            entry = entries.get(key)
            if entry is not None:
                entries[key] = replace(entry, refresh_at=math.inf)


def _wait(call: "Future[Identity]", deadline: float) -> Identity:
    try:
        return call.result(timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise IdentityUnavailable.too_slow() from None


def _fail(call: _Call, exc: BaseException) -> None:
    if call.waiters is not None:
        call.waiters.set_exception(exc)


def _survive_fork(cache: IdentityCache) -> None:
    """In a forked child, no calls are in flight (the threads that would finish the parent's do not exist there):
    the cache starts again under its slots' fresh lock (CallSlots resets first: it was registered first)."""
    ref = weakref.ref(cache)

    def in_child() -> None:
        if (alive := ref()) is not None:
            alive._start_without_calls()

    os.register_at_fork(after_in_child=in_child)


def _survive_fork_holding(slots: CallSlots) -> None:
    """Hold the lock across fork (so the child copies consistent caches), then give the child a fresh one with no
    calls counted."""
    ref = weakref.ref(slots)

    def before() -> None:
        if (alive := ref()) is not None:
            alive.lock.acquire()

    def in_parent() -> None:
        if (alive := ref()) is not None:
            alive.lock.release()

    def in_child() -> None:
        if (alive := ref()) is not None:
            alive.reset()

    os.register_at_fork(before=before, after_in_parent=in_parent, after_in_child=in_child)
