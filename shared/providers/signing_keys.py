"""Entra ID's published signing keys (JWKS), per tenant: fetched through the hardened upstream client, kept for
their published lifetime (at most MAX_LIFETIME_SECONDS), one fetch at a time per tenant. Only RSA public keys
are kept.

- A key set past its lifetime keeps serving while a background fetch replaces it (no request waits for that),
  for at most STALE_GRACE_SECONDS more: Entra being briefly unreachable does not stop sign-ins.
- A `kid` not in the set triggers a fetch at most once per REFETCH_SECONDS per tenant, so tokens with made-up
  `kid`s cannot make us hammer the key endpoint; the burst shares that one fetch (single flight). Between
  refetches such a token is refused as KeyNotYetKnown, which nobody remembers: once the set is fetched again the
  same token may verify.
- With no usable key set and Entra unreachable: IdentityUnavailable (503), and no new attempt before
  FAILED_FETCH_BACKOFF_SECONDS has passed.
"""

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK, PyJWTError

from .. import messages as say
from .. import telemetry
from ..cache.flight import Flight, wait
from ..errors import IdentityBadResponse, InvalidToken, KeyNotYetKnown
from ..forking import reset_in_child
from ..http import untrusted_json
from ..http.upstream import Answer, Upstream
from ..identity import TEAMS

log = logging.getLogger("kaizala_auth")

SERVICE = say.ENTRA_SERVICE
DEFAULT_LIFETIME_SECONDS = 3600.0
MIN_LIFETIME_SECONDS = 300.0
MAX_LIFETIME_SECONDS = 12 * 3600.0  # Entra says a day; Microsoft's own libraries refetch every 12 hours
STALE_GRACE_SECONDS = 3600.0
REFETCH_SECONDS = 30.0
FAILED_FETCH_BACKOFF_SECONDS = 2.0
BACKGROUND_FETCH_SECONDS = 10.0  # a replacement fetched in the background: nobody waits for it
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,9})\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: dict[str, PyJWK]  # by kid: RSA signature keys only
    fetched_at: float
    fresh_until: float
    usable_until: float


class SigningKeys:
    def __init__(self, upstream: Upstream | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._upstream = upstream or Upstream(SERVICE, "entra")
        self._clock = clock
        self._reset()
        reset_in_child(self, SigningKeys._reset)  # a lock held at fork stays held, and its flights never end

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, KeySet] = {}
        self._flights: Flight[str, KeySet] = Flight()
        self._last_attempt: dict[str, tuple[float, bool]] = {}  # url -> (when, succeeded)

    def key(self, url: str, kid: str, deadline: float) -> PyJWK:
        """The key `kid` of the set at `url`. InvalidToken when the set does not hold it; IdentityUnavailable when
        no usable set can be had before `deadline` (a `time.monotonic()` value)."""
        with self._lock:  # every join happens under it: one decision who fetches, and when
            now = self._clock()
            current = self._sets.get(url)
            usable = current is not None and now < current.usable_until
            if usable and current is not None and kid in current.keys:
                if now >= current.fresh_until:
                    self._refresh_in_background(url)
                return current.keys[kid]
            # An unknown kid may refetch a usable set only now and then; a missing set after a failure, soon.
            if self._flights.in_flight(url) or self._may_fetch(url, now, REFETCH_SECONDS if usable else 0.0):
                flight, leading = self._flights.join(url)
            else:
                flight, leading = None, False
        if flight is None:
            if usable:  # not in a set fetched moments ago; the next refetch may bring it: refused, not remembered
                raise KeyNotYetKnown(say.TEAMS_UNKNOWN_KEY)
            raise self._upstream.unavailable(retry_after=math.ceil(FAILED_FETCH_BACKOFF_SECONDS))
        if leading:
            self._fetch(url, flight, deadline)
        found = wait(flight, deadline, self._upstream.too_slow)
        if kid not in found.keys:
            raise InvalidToken(say.TEAMS_UNKNOWN_KEY)
        return found.keys[kid]

    def _may_fetch(self, url: str, now: float, interval: float) -> bool:
        """Under the lock: whether a fetch may start now, `interval` seconds after the last attempt (and never
        sooner than FAILED_FETCH_BACKOFF_SECONDS after a failed one)."""
        last = self._last_attempt.get(url)
        if last is None:
            return True
        when, succeeded = last
        return now - when >= (interval if succeeded else max(interval, FAILED_FETCH_BACKOFF_SECONDS))

    def _refresh_in_background(self, url: str) -> None:
        """Under the lock: replace a set past its lifetime on a daemon thread (at most one per url)."""
        if self._flights.in_flight(url) or not self._may_fetch(url, self._clock(), 0.0):
            return
        flight, _leading = self._flights.join(url)
        deadline = time.monotonic() + BACKGROUND_FETCH_SECONDS
        try:
            fetch = telemetry.carry(self._fetch)
            threading.Thread(target=fetch, args=(url, flight, deadline), name="entra-keys", daemon=True).start()
        except RuntimeError:  # no thread could be started: the stale set serves on; the next request tries again
            self._flights.finish(url, flight, error=self._upstream.unavailable())

    def _fetch(self, url: str, flight: "Future[KeySet]", deadline: float) -> None:
        """Outside the lock: fetch, record, then end the flight (which tells every waiter)."""
        try:
            found = self._download(url, deadline)
        except BaseException as exc:  # noqa: BLE001 - every failure reaches the waiters
            with self._lock:
                self._last_attempt[url] = (self._clock(), False)
            self._flights.finish(url, flight, error=exc)
            return
        with self._lock:
            self._last_attempt[url] = (found.fetched_at, True)
            self._sets[url] = found
        self._flights.finish(url, flight, found)

    def _download(self, url: str, deadline: float) -> KeySet:
        with telemetry.upstream_call(TEAMS, telemetry.names.SPAN_ENTRA_KEYS, signing_keys=True) as call:
            answer = self._upstream.get(url, {"Accept": "application/json"}, deadline)
            call.status(answer.status)
            if answer.status != 200:
                log.warning("entra signing keys: unexpected status %d", answer.status)
                raise (self._upstream.unavailable() if answer.status >= 500 else IdentityBadResponse(_BAD_KEYS))
            keys = _parse_keys(answer)
        now = self._clock()
        lifetime = _lifetime(answer.headers.get("Cache-Control"))
        log.info("entra signing keys fetched: %d keys, kept %.0f s", len(keys), lifetime)
        return KeySet(
            keys, fetched_at=now, fresh_until=now + lifetime, usable_until=now + lifetime + STALE_GRACE_SECONDS
        )


_BAD_KEYS = say.ENTRA_BAD_KEYS


def _parse_keys(answer: Answer) -> dict[str, PyJWK]:
    if answer.body is None:
        raise IdentityBadResponse(_BAD_KEYS)
    try:
        document = untrusted_json.parse(answer.body)
    except untrusted_json.NotJson:
        raise IdentityBadResponse(_BAD_KEYS) from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise IdentityBadResponse(_BAD_KEYS)
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        if _PRIVATE_MEMBERS & entry.keys():  # a published private key is a broken key set, never a key to use
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            key = PyJWK(entry, algorithm="RS256")
        except (PyJWTError, ValueError, TypeError):  # a key that cannot be used is skipped, like PyJWKSet does
            continue
        if isinstance(key.key, RSAPublicKey):
            keys[kid] = key
    if not keys:
        raise IdentityBadResponse(_BAD_KEYS)
    return keys


def _lifetime(cache_control: str | None) -> float:
    match = _MAX_AGE.search(cache_control or "")
    if match is None:
        return DEFAULT_LIFETIME_SECONDS
    return min(max(float(match.group(1)), MIN_LIFETIME_SECONDS), MAX_LIFETIME_SECONDS)
