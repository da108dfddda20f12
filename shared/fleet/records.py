"""What the fleet keeps in Redis, named and read in one place: the key names, the sealed values of an identity, a
rejection and the throttle, and the one reading of them (`SharedState`).

Every value is sealed by `shared.fleet.sealing`: names and values reveal nothing, and a value that does not open is
a miss. Times read back are bounded: a rejection is trusted for at most MAX_REJECTION_SECONDS and the throttle for
at most MAX_THROTTLE_SECONDS, whatever Redis says.
"""

import time
from dataclasses import dataclass, replace
from typing import Any

from ..identity import KAIZALA, Identity, Provider
from ..settings import TOKEN_LIFETIME_SECONDS
from .sealing import Sealed, Sealer, TokenKeys

MAX_REJECTION_SECONDS = 60.0  # a rejection read back is trusted for no longer, whatever Redis says
MAX_THROTTLE_SECONDS = 300.0  # Kaizala's largest Retry-After we honour (kaizala.MAX_RETRY_AFTER_SECONDS)
INDEX_MILLISECONDS = (TOKEN_LIFETIME_SECONDS + 60) * 1000  # outlives every entry it lists
_REJECTED = "rejected"
_THROTTLE = "throttle"


@dataclass(frozen=True, slots=True)
class SharedState:
    """What the fleet knows about one token; all None when Redis is off, down or knows nothing."""

    entry: Sealed | None = None
    rejected_until: float | None = None
    throttled_until: float | None = None

    def seen_by(self, provider: Provider) -> "SharedState":
        """What this says to `provider`'s cache: an identity the other provider vouched for is not this token's
        answer, and Kaizala's 429 holds back calls to Kaizala only."""
        state = self
        if state.entry is not None and state.entry.identity.provider != provider:
            state = replace(state, entry=None)
        if provider != KAIZALA and state.throttled_until is not None:
            state = replace(state, throttled_until=None)
        return state


NOTHING = SharedState()


class Records:
    """One deployment's names and values. A token's identity and its rejection share one key (the entry key);
    the throttle is one key for the whole deployment. Every command names one key, so a cluster proxy never sees
    a cross-slot command; a token's entry and lease share a hash tag (`{name}`), so on a Redis Cluster both live
    in one slot, on one shard, and fail over together."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer
        self.namespace = sealer.namespace
        self.throttle_keys = sealer.deployment_keys(_THROTTLE)
        self.channel = f"{self.namespace}:purge"

    def keys(self, token: str) -> TokenKeys:
        return self.sealer.keys(token)

    def user_tag(self, user_id: str) -> str:
        return self.sealer.user_tag(user_id)

    def entry_key(self, name: str) -> str:
        return f"{self.namespace}:e:{{{name}}}"

    def lease_key(self, name: str) -> str:
        return f"{self.namespace}:l:{{{name}}}"

    def index_key(self, tag: str) -> str:
        """The purge index: the names of one user's entries, under the user's tag."""
        return f"{self.namespace}:u:{{{tag}}}"

    def identity(self, keys: TokenKeys, identity: Identity, expires_at: float) -> bytes:
        return self.sealer.seal_identity(keys, identity, expires_at)

    def rejection(self, keys: TokenKeys, until: float) -> bytes:
        return self.sealer.seal_until(keys, _REJECTED, until)

    def throttle(self, until: float) -> bytes:
        return self.sealer.seal_until(self.throttle_keys, _THROTTLE, until)

    def state(self, keys: TokenKeys, replies: list[Any]) -> SharedState:
        """From [entry-key value, throttle value]: the entry key holds a sealed identity or a sealed rejection."""
        now = time.time()
        value, throttle = replies[0], replies[1]
        entry = self.sealer.open_identity(keys, value)
        rejected = None if entry is not None else self.sealer.open_until(keys, _REJECTED, value)
        throttled = self.sealer.open_until(self.throttle_keys, _THROTTLE, throttle) if throttle else None
        if entry is not None and entry.expires_at <= now:
            entry = None
        return SharedState(
            entry=entry,
            rejected_until=_bounded(rejected, now, MAX_REJECTION_SECONDS),
            throttled_until=_bounded(throttled, now, MAX_THROTTLE_SECONDS),
        )


def _bounded(until: float | None, now: float, longest: float) -> float | None:
    if until is None or until <= now:
        return None
    return min(until, now + longest)
