"""Fleet-wide single flight: one Kaizala call per token for every instance sharing Redis.

The in-process leader for a token (one per instance) asks the fleet first; if no instance has the answer, the one
that takes the fleet's lease calls Kaizala and stores the outcome for all, while the others wait for it (never
past their own deadline). A leader that dies costs one lease; when Redis fails, every instance simply leads.

`Leases` is the lease itself in Redis (take it while reading what the fleet knows, give it back, wait for the
leader's result); `resolve` is the protocol a cache follows with it.
"""

import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from .. import messages
from ..errors import IdentityUnavailable, InvalidToken, KaizalaThrottled
from ..identity import KAIZALA, Identity, Provider
from .client import RedisClient, reset_in_forked_child
from .records import NOTHING, Records, SharedState
from .sealing import TokenKeys

if TYPE_CHECKING:
    from .cache import FleetCache

Resolved = tuple[Identity, float]  # the identity, and until when the fleet holds it
MIN_LEASE_SECONDS = 0.05
LEASE_SHARE = 0.5
MAX_LEASE_MILLISECONDS = 60_000  # KAIZALA_TIMEOUT_SECONDS is at most 60
_POLL_FIRST, _POLL_MAX = 0.002, 0.010  # a waiter sees the result at most ~10 ms late; Redis barely notices
# Delete the lease only if it is still ours: a leader whose lease ran out must not end the next leader's.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Leases:
    """This instance's leases: which tokens it leads for the fleet, each under an owner value of its own."""

    def __init__(self, client: RedisClient, records: Records) -> None:
        self._client = client
        self._records = records
        self._owned: dict[str, bytes] = {}
        self._lock = threading.Lock()
        reset_in_forked_child(self)

    def try_lead(self, token: str, lease_seconds: float) -> tuple[bool, SharedState]:
        """Take the fleet's lease for `token` and, in the same round trip, read what the fleet knows about it.

        (True, state): we hold the lease; if `state` already holds what the caller needs (a leader finished just
        before us), the caller uses it and gives the lease back (`release`). (False, state): another instance is
        calling; `await_result` waits for it. (True, NOTHING) when Redis fails or is skipped: lead locally."""
        records = self._records
        keys = records.keys(token)
        owner = os.urandom(16)
        milliseconds = max(1, int(lease_seconds * 1000))

        def take() -> list[Any]:
            pipe = self._client.redis.pipeline(transaction=False)
            pipe.set(records.lease_key(keys.name), owner, nx=True, px=milliseconds)
            pipe.get(records.entry_key(keys.name))
            pipe.get(records.throttle_keys.name)
            return _readable(pipe.execute(raise_on_error=False))

        replies = self._client.call(take, "try_lead", writes=True)
        if replies is None:
            return True, NOTHING
        # SET NX answers None when the key exists.
        taken, state = bool(replies[0]), records.state(keys, replies[1:])
        if taken:
            with self._lock:
                self._owned[keys.name] = owner
        return taken, state

    def release(self, token: str) -> None:
        """Give the lease back without a result (the call failed): a waiter then leads instead of waiting."""
        keys = self._records.keys(token)
        with self._lock:
            if keys.name not in self._owned:
                return  # nothing to give back: no round trip (which would pass for a probe that Redis answered)

        def write() -> None:
            pipe = self._client.redis.pipeline(transaction=False)
            if self.release_in(pipe, keys):
                pipe.execute()

        self._client.call(write, "release", writes=True)

    def await_result(self, token: str, deadline: float) -> SharedState:
        """Wait for the leader's result: returns as soon as an entry, a rejection or a throttle appears, the lease
        disappears (leader done, failed or dead), Redis fails, or `deadline` (monotonic) passes."""
        keys = self._records.keys(token)
        pause = _POLL_FIRST
        while True:
            replies = self._client.call(lambda: self._read(keys), "await_result")
            if replies is None:
                return NOTHING
            state = self._records.state(keys, replies)
            # A lease lives at most one deadline: one without expiry, or longer, was not written by an instance
            # (someone with write access to Redis); it must not make anyone wait.
            # -2: no lease; -1: one without expiry
            leased = 0 <= int(replies[2] if replies[2] is not None else -2) <= MAX_LEASE_MILLISECONDS
            remaining = deadline - time.monotonic()
            if state != NOTHING or not leased or remaining <= 0:
                return state
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)

    def release_in(self, pipe: "redis.client.Pipeline", keys: TokenKeys) -> bool:
        """Queue the release of our lease for `keys` on `pipe` (after a result, so a waiter never sees neither);
        False when we hold none."""
        with self._lock:
            owner = self._owned.pop(keys.name, None)
        if owner is None:
            return False
        # execute_command, not pipe.eval: a cluster pipeline refuses eval() but routes EVAL by its one key.
        pipe.execute_command("EVAL", _RELEASE, 1, self._records.lease_key(keys.name), owner)  # type: ignore[no-untyped-call]
        return True

    def _read(self, keys: TokenKeys) -> list[Any]:
        records = self._records
        pipe = self._client.redis.pipeline(transaction=False)
        pipe.get(records.entry_key(keys.name))
        pipe.get(records.throttle_keys.name)
        pipe.pttl(records.lease_key(keys.name))
        return _readable(pipe.execute(raise_on_error=False), reads_only=True)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._owned = {}


def _readable(replies: list[Any], *, reads_only: bool = False) -> list[Any]:
    """A pipeline's replies with an error reply on a read (a key of the wrong type a Redis writer put there) read as
    nothing, so it cannot stop single flight or the throttle for the fleet. Unless the pipeline only reads, the
    first command's error (taking the lease: denied, a dead shard) is raised, as a failed round trip."""
    if not reads_only and isinstance(replies[0], Exception):
        raise replies[0]
    errors = [reply for reply in replies if isinstance(reply, Exception)]
    if errors and not all(str(error).startswith("WRONGTYPE") for error in errors):
        raise errors[0]  # Redis failing (a shard down, a denied command), not a writer's key
    return [None if isinstance(reply, Exception) else reply for reply in replies]


def resolve(
    fleet: "FleetCache",
    token: str,
    fetch: Callable[[float], Identity],
    deadline: float,
    *,
    rejection_until: float,
    lives_until: float,
    refreshing_until: float | None = None,
    provider: Provider = KAIZALA,
    service: str = messages.KAIZALA_SERVICE,
    patience: float | None = None,
) -> Resolved | None:
    """The identity for `token` through the fleet. Typed errors as `fetch` raises them (InvalidToken for a
    rejection the fleet shares, KaizalaThrottled while the fleet is throttled).

    `refreshing_until` (a refresh-ahead of an entry that lives until then): adopt a newer fleet entry if one was
    stored meanwhile, else refresh once for the fleet; None when another instance is refreshing it.
    `provider`: who checks this token; the fleet's record of the other provider is not this token's answer, and
    Kaizala's 429 holds back only calls to Kaizala.
    `patience`: how long to wait on another instance's lease (about one upstream call) before asking upstream
    ourselves, so a lease nobody will fulfil (a leader that hangs, or one a Redis writer forged) delays no one
    longer than that; None: until the deadline.
    """
    if refreshing_until is not None:
        found = _settled(fleet.lookup(token).seen_by(provider), refreshing_until, provider)
        if found is not None:
            return found
    # The lease lasts half the time left: if the leader's result never lands (its store failed, it died), the
    # waiters still have time to ask Kaizala themselves before their own deadline.
    lease_seconds = max(MIN_LEASE_SECONDS, (deadline - time.monotonic()) * LEASE_SHARE)
    leading, state = fleet.try_lead(token, lease_seconds=lease_seconds)
    state = state.seen_by(provider)
    # What the fleet knew when we asked for the lease: a leader may have finished since our lookup.
    try:
        found = _settled(state, refreshing_until, provider)
    except (InvalidToken, IdentityUnavailable):
        if leading:
            fleet.release(token)
        raise
    if found is not None:
        if leading:
            fleet.release(token)
        return found
    if not leading:
        if refreshing_until is not None:
            return None
        waited_until = deadline if patience is None else min(deadline, time.monotonic() + patience)
        found = _settled(fleet.await_result(token, waited_until).seen_by(provider), None, provider)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise IdentityUnavailable.too_slow(service)
        # The lease ended without a result (its leader failed or died), it outlasted our patience, or Redis
        # failed: ask upstream ourselves.
    return _ask_upstream(fleet, token, fetch, deadline, rejection_until=rejection_until, lives_until=lives_until)


def _ask_upstream(
    fleet: "FleetCache",
    token: str,
    fetch: Callable[[float], Identity],
    deadline: float,
    *,
    rejection_until: float,
    lives_until: float,
) -> Resolved:
    """Check the token upstream (as the fleet's leader, or alone when Redis cannot tell) and share the outcome."""
    try:
        identity = fetch(deadline)
    except InvalidToken as rejected:
        if rejected.lasting:
            fleet.store_rejection(token, until=rejection_until)
        else:
            fleet.release(token)
        raise
    except KaizalaThrottled as throttled:
        fleet.throttle(until=time.time() + throttled.retry_after)
        fleet.release(token)
        raise
    except BaseException:
        fleet.release(token)
        raise
    fleet.store(token, identity, expires_at=lives_until)
    return identity, lives_until  # the same end for this process's copy (Redis' own goes a little earlier)


def _settled(state: SharedState, refreshing_until: float | None, provider: Provider) -> Resolved | None:
    """The fleet's identity when it is usable (for a refresh: newer than the entry refreshed); raises for a shared
    rejection or throttle; None when the fleet does not settle it."""
    entry = state.entry
    if entry is not None and (refreshing_until is None or entry.expires_at > refreshing_until):
        return entry.identity, entry.expires_at
    _raise_shared(state, provider)
    return None


def _raise_shared(state: SharedState, provider: Provider) -> None:
    if state is NOTHING:
        return
    if state.rejected_until is not None:
        raise InvalidToken.remembered(provider)
    if state.throttled_until is not None:
        raise KaizalaThrottled.holding(max(1, math.ceil(state.throttled_until - time.time())))
