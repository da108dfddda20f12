"""The identity cache: one upstream call per token, however many requests arrive at once.

- Keyed by the SHA-256 of the token (the caller hashes it): the raw token never sits in memory as a key.
- Caches the identity, not the verdict: the allowlists are applied to every request by the policy.
- An entry lives `TOKEN_CACHE_SECONDS`, never past the token's own `exp` (wall clock, like `exp` itself).
- Tokens Kaizala rejected are remembered briefly, in a separate bounded cache, so a flood of junk tokens cannot
  push real users' identities out. Upstream failures are never cached.
- Concurrent misses for one key share one call (single flight). With refresh-ahead, a hit in the last part of an
  entry's life answers at once and refreshes the entry in the background through the same single flight.
"""

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import Literal

from cachetools import TLRUCache

from .errors import InvalidToken
from .kaizala import Identity

Source = Literal["hit", "miss", "shared"]
Fetch = Callable[[], Identity]

REJECTION_SECONDS = 30.0
REFRESH_AHEAD_FRACTION = 0.2  # refresh during the last 20% of an entry's life


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
    expires_at: float
    not_after: float | None


class IdentityCache:
    def __init__(self, maxsize: int = 10_000, timer: Callable[[], float] | None = None) -> None:
        # A lambda, not time.time itself, so a test that patches time.time moves this clock too.
        self._timer = timer or (lambda: time.time())  # noqa: PLW0108
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[Identity]] = {}
        self._refresher: Executor | None = None
        self.maxsize = 0
        self.resize(maxsize)

    def resize(self, maxsize: int) -> None:
        """Apply a new TOKEN_CACHE_MAX_ENTRIES; a change starts from empty caches."""
        if maxsize == self.maxsize:
            return
        with self._lock:
            self.maxsize = maxsize
            self._identities: TLRUCache[str, _Entry] = TLRUCache(
                maxsize, ttu=lambda _key, entry, _now: entry.expires_at, timer=self._timer
            )
            self._rejections: TLRUCache[str, float] = TLRUCache(
                maxsize, ttu=lambda _key, until, _now: until, timer=self._timer
            )

    def clear(self) -> None:
        """Forget every identity and rejection (tests call it between cases)."""
        with self._lock:
            self._identities.clear()
            self._rejections.clear()

    def get(
        self,
        key: str,
        fetch: Fetch,
        *,
        seconds: float,
        not_after: Callable[[], float | None] = lambda: None,
        refresh_ahead: bool = True,
    ) -> tuple[Identity, Source]:
        """The identity for `key`, from the cache or from `fetch()` (whose typed errors propagate).

        `not_after()` gives the token's exp and runs only on a miss: a cached entry never outlives the exp it was
        stored with, so on a hit the token is known to be unexpired and well formed.
        """
        with self._lock:
            entry = self._identities.get(key)
            if entry is not None:
                lifetime = _Lifetime(seconds, entry.not_after)
                if refresh_ahead and self._refresh_due(key, entry, lifetime):
                    self._start_refresh(key, fetch, lifetime)
                return entry.identity, "hit"
        lifetime = _Lifetime(seconds, not_after())
        with self._lock:
            if key in self._rejections:
                raise InvalidToken("Kaizala rejected this token moments ago. Get a new one and try again.")
            future = self._in_flight.get(key)
            leader = future is None
            if future is None:
                future = self._in_flight[key] = Future()
        if not leader:
            return future.result(), "shared"
        return self._settle(key, future, fetch, lifetime), "miss"

    def _refresh_due(self, key: str, entry: _Entry, lifetime: _Lifetime) -> bool:
        now = self._timer()
        return (
            now >= entry.refresh_at
            and key not in self._in_flight
            and lifetime.expires_at(now) > entry.expires_at  # a refresh must be able to extend the entry
        )

    def _start_refresh(self, key: str, fetch: Fetch, lifetime: _Lifetime) -> None:
        future: Future[Identity] = Future()
        self._in_flight[key] = future
        if self._refresher is None:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - off the cold-start path

            self._refresher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kaizala-refresh")
        self._refresher.submit(self._settle_quietly, key, future, fetch, lifetime)

    def _settle_quietly(self, key: str, future: Future[Identity], fetch: Fetch, lifetime: _Lifetime) -> None:
        try:
            self._settle(key, future, fetch, lifetime)
        except InvalidToken:
            pass  # _settle already dropped the entry: Kaizala no longer accepts the token
        except Exception:  # noqa: BLE001 - any failure: no further refresh; the entry expires on its own
            with self._lock:
                entry = self._identities.get(key)
                if entry is not None:
                    self._identities[key] = replace(entry, refresh_at=math.inf)

    def _settle(self, key: str, future: Future[Identity], fetch: Fetch, lifetime: _Lifetime) -> Identity:
        """Run the one upstream call for `key`, record its outcome, and hand it to every waiter."""
        try:
            identity = fetch()
        except InvalidToken as exc:
            with self._lock:
                self._identities.pop(key, None)  # revoked since we cached it: stop trusting it now
                self._rejections[key] = self._timer() + min(REJECTION_SECONDS, lifetime.seconds)
                del self._in_flight[key]
            future.set_exception(exc)
            raise
        except BaseException as exc:
            with self._lock:
                del self._in_flight[key]
            future.set_exception(exc)
            raise
        now = self._timer()
        expires_at = lifetime.expires_at(now)
        with self._lock:
            self._identities[key] = _Entry(
                identity,
                refresh_at=expires_at - (expires_at - now) * REFRESH_AHEAD_FRACTION,
                expires_at=expires_at,
                not_after=lifetime.not_after,
            )
            del self._in_flight[key]
        future.set_result(identity)
        return identity
