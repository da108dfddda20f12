"""Lifetime rules, in one place: how long what the cache learns may serve, and when it is checked again.

- An identity lives `TOKEN_CACHE_SECONDS` from when it was checked, never past the token's own `exp` (wall
  clock, like `exp` itself), and never past the fleet's entry when it came from there. Lowering the setting
  applies to entries already stored, at once.
- With Redis on, this process's copy serves at most `TOKEN_CACHE_LOCAL_SECONDS`, then the fleet is asked again;
  while Redis is skipped (it failed) the copy still serves, as without Redis, and goes back to the fleet once Redis
  answers. It is not re-checked with the provider by each instance meanwhile: after a failover that would be every
  user of every instance at once, the surge the fleet exists to prevent.
- Refresh-ahead: during the last REFRESH_AHEAD_FRACTION of its life an entry is re-checked in the background.
- A provider's rejection is remembered for REJECTION_SECONDS (at most the entry lifetime). Failures never are.
"""

import math
from dataclasses import dataclass

from ..identity import Identity

REJECTION_SECONDS = 30.0
REFRESH_AHEAD_FRACTION = 0.2  # refresh during the last 20% of an entry's life


@dataclass(frozen=True, slots=True)
class Entry:
    identity: Identity
    refresh_at: float
    expires_at: float  # of this process's copy
    lives_until: float  # of the identity in every tier (the fleet's entry); expires_at without Redis
    stored_at: float
    not_after: float | None  # the token's exp, when it has one
    user_tag: str | None = None  # the fleet's one-way tag of the user id, to match purges


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """The settings that say how long things live: TOKEN_CACHE_SECONDS, TOKEN_CACHE_LOCAL_SECONDS (inf without
    Redis) and TOKEN_REFRESH_AHEAD."""

    seconds: float = 300.0
    local_seconds: float = math.inf
    refresh_ahead: bool = True

    def until(self, now: float, not_after: float | None) -> float:
        """The end of an identity checked now, for a token that expires at `not_after`."""
        end = now + self.seconds
        return end if not_after is None else min(end, not_after)

    def rejection_until(self, now: float) -> float:
        return now + min(REJECTION_SECONDS, self.seconds)

    def entry(
        self,
        identity: Identity,
        now: float,
        not_after: float | None,
        lives_until: float | None = None,
        user_tag: str | None = None,
    ) -> Entry | None:
        """The entry for an identity checked now (`lives_until`: the fleet's end, when it came from there); None
        when it may not be kept at all."""
        own = self.until(now, not_after)
        end = own if lives_until is None else min(lives_until, own)
        if end <= now:
            return None
        return Entry(
            identity,
            refresh_at=end - self.seconds * REFRESH_AHEAD_FRACTION,
            expires_at=min(end, now + self.local_seconds),
            lives_until=end,
            stored_at=now,
            not_after=not_after,
            user_tag=user_tag,
        )

    def serves(self, entry: Entry, now: float, *, fleet_skipped: bool) -> bool:
        """Whether `entry` answers a request now."""
        if entry.stored_at + self.seconds <= now:
            return False
        return now < entry.expires_at or fleet_skipped

    def due(self, entry: Entry, now: float) -> bool:
        """Whether a hit on `entry` should also re-check it in the background."""
        return self.refresh_ahead and now >= entry.refresh_at

    def extends(self, entry: Entry, now: float) -> bool:
        """Whether a check made now would let the identity live longer than `entry` does."""
        return self.until(now, entry.not_after) > entry.lives_until
