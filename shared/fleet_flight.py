"""Fleet-wide single flight: one Kaizala call per token for every instance sharing Redis.

The in-process leader for a token (one per instance) asks the fleet first; if no instance has the answer, the one
that takes the fleet's lease calls Kaizala and stores the outcome for all, while the others wait for it (never
past their own deadline). A leader that dies costs one lease; when Redis fails, every instance simply leads.
"""

import math
import time
from collections.abc import Callable

from .errors import IdentityUnavailable, InvalidToken, KaizalaThrottled
from .fleet import NOTHING, FleetCache, SharedState
from .identity import KAIZALA, Identity, Provider

Resolved = tuple[Identity, float]  # the identity, and until when the fleet holds it
MIN_LEASE_SECONDS = 0.05
LEASE_SHARE = 0.5


def resolve(
    fleet: FleetCache,
    token: str,
    fetch: Callable[[float], Identity],
    deadline: float,
    *,
    rejection_until: float,
    lives_until: float,
    refreshing_until: float | None = None,
    provider: Provider = KAIZALA,
) -> Resolved | None:
    """The identity for `token` through the fleet. Typed errors as `fetch` raises them (InvalidToken for a
    rejection the fleet shares, KaizalaThrottled while the fleet is throttled).

    `refreshing_until` (a refresh-ahead of an entry that lives until then): adopt a newer fleet entry if one was
    stored meanwhile, else refresh once for the fleet; None when another instance is refreshing it.
    `provider`: who checks this token; the fleet's record of the other provider is not this token's answer, and
    Kaizala's 429 holds back only calls to Kaizala.
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
        found = _settled(fleet.await_result(token, deadline).seen_by(provider), None, provider)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise IdentityUnavailable.too_slow()
        # The lease ended without a result (its leader failed or died) or Redis failed: ask Kaizala ourselves.
    return _ask_upstream(fleet, token, fetch, deadline, rejection_until=rejection_until, lives_until=lives_until)


def _ask_upstream(
    fleet: FleetCache,
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
    return identity, lives_until  # the same end for this process's copy: it never outlives the fleet's


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
