"""`FleetCache`: the fleet cache's Redis side, one object composed of the connection (`client`), the names and
values (`records`), the leases (`lease`) and the purges (`purges`). Its own job is sharing identities, rejections
and the throttle; everything else it hands to the part that does it."""

import threading
import time
from typing import TYPE_CHECKING

from ..identity import Identity
from ..settings import FleetSettings
from .breaker import Breaker
from .check import Step, check
from .client import CLUSTER, RedisClient
from .lease import Leases
from .purges import OnPurge, Purges
from .records import INDEX_MILLISECONDS, MAX_REJECTION_SECONDS, MAX_THROTTLE_SECONDS, NOTHING, Records, SharedState
from .sealing import Sealer, TokenKeys

if TYPE_CHECKING:
    from redis.credentials import CredentialProvider

# While Redis is skipped, one call a second probes it: sharing resumes within about a second of its return.
OPEN_SECONDS = 1.0
# A shared identity's expiry in Redis, rounded down to the largest of these that is at most a tenth of its life.
EXPIRY_GRAINS_SECONDS = (60.0, 10.0, 1.0, 0.1)


def coarse_expiry(expires_at: float, now: float) -> float:
    """`expires_at` rounded down (never later: an entry must not outlive its token) to a whole minute when at least
    ten minutes remain, to 10 s when at least 100 s remain, and so on: a whole tenth of the life is the most an
    entry loses."""
    remaining = expires_at - now
    grain = next((grain for grain in EXPIRY_GRAINS_SECONDS if remaining >= 10 * grain), EXPIRY_GRAINS_SECONDS[-1])
    return expires_at // grain * grain


class FleetCache:
    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_ms: int = 100,
        max_connections: int = 64,
        failures_to_open: int = 3,
        open_seconds: float = OPEN_SECONDS,
        ca_file: str | None = None,
        credential_provider: "CredentialProvider | None" = None,
    ) -> None:
        self._sealer = Sealer(secret)
        client = RedisClient(
            url,
            timeout_ms=timeout_ms,
            max_connections=max_connections,
            failures_to_open=failures_to_open,
            open_seconds=open_seconds,
            ca_file=ca_file,
            credential_provider=credential_provider,
        )
        self.where = client.where  # for logs: the URL itself holds the access key
        self.timeout = client.timeout
        self.breaker: Breaker = client.breaker
        self._client = client
        self._records = Records(self._sealer)
        self._leases = Leases(client, self._records)
        self._purges = Purges(client, self._records)

    @classmethod
    def from_settings(cls, settings: FleetSettings) -> "FleetCache | None":
        """The fleet cache the settings ask for; None when TOKEN_CACHE_REDIS_URL is unset."""
        if settings.redis_url is None or settings.redis_secret is None:
            return None
        return cls(
            settings.redis_url,
            settings.redis_secret,
            timeout_ms=settings.redis_timeout_ms,
            ca_file=settings.redis_ca_file,
            credential_provider=credential_provider(settings),
        )

    @property
    def subscribed(self) -> threading.Event:
        """Set while the purge subscription is live (tests wait on it)."""
        return self._purges.subscribed

    # --- identities, rejections, the throttle ------------------------------------------------------------------

    @property
    def skipped(self) -> bool:
        """Whether Redis is being skipped now (it failed a few times in a row, and no probe is due): callers serve as
        without it. When a probe is due this is False, so the next request asks Redis."""
        return self.breaker.skipping

    def fits(self, deadline: float, round_trips: int = 1) -> bool:
        """Whether `round_trips` Redis operations still fit before `deadline` (time.monotonic()). On a cluster an
        operation whose shard fails can take two timeouts (redis-py's cluster pipeline retries a failed command
        once, by itself, after refreshing the topology)."""
        per_trip = self.timeout * (2 if self._client.kind == CLUSTER else 1)
        return deadline - time.monotonic() > round_trips * per_trip

    def lookup(self, token: str) -> SharedState:
        """The token's shared identity or rejection (they share one key): one GET, the cheapest round trip.
        NOTHING when Redis fails or is skipped. The fleet's throttle is read where it matters, before anyone
        calls Kaizala (`try_lead`, `await_result`)."""
        self._purges.ensure_listener()
        keys = self._records.keys(token)
        value = self._client.call(lambda: self._client.redis.get(self._entry_key(keys)), "lookup")
        return NOTHING if value is None else self._records.state(keys, [value, None])

    def store(self, token: str, identity: Identity, expires_at: float) -> None:
        """Share an identity until `expires_at`, list it in its user's purge index, and end our lease if any.

        Redis lets the entry go a little early (`coarse_expiry`): its remaining life (PTTL) then tells a Redis
        reader the token's `exp` only roughly. The sealed value keeps the exact end."""
        records = self._records
        keys = records.keys(token)
        now = time.time()
        milliseconds = int((coarse_expiry(expires_at, now) - now) * 1000)
        if milliseconds <= 0:  # nothing to share (caching off, or the token expires now): still end our lease
            self.release(token)
            return

        def write() -> None:
            value = records.identity(keys, identity, expires_at)
            index = records.index_key(records.user_tag(identity.id))
            # The purge index first, the entry only once it is listed: an entry a purge cannot find (its index's
            # shard failed, or SADD was denied) would outlive every purge. Two round trips, on a miss only.
            listing = self._client.redis.pipeline(transaction=False)
            listing.sadd(index, keys.name)
            listing.pexpire(index, INDEX_MILLISECONDS)
            listing.execute()
            pipe = self._client.redis.pipeline(transaction=False)
            pipe.set(self._entry_key(keys), value, px=milliseconds)
            self._leases.release_in(pipe, keys)  # after the result, so a waiter never sees neither
            pipe.execute()

        self._client.call(write, "store", writes=True)

    def store_rejection(self, token: str, until: float) -> None:
        """Share Kaizala's rejection of `token` until `until` (at most MAX_REJECTION_SECONDS), drop its shared
        identity (a refresh found it revoked: no instance may keep serving it), and end our lease."""
        keys = self._records.keys(token)
        milliseconds = int((min(until, time.time() + MAX_REJECTION_SECONDS) - time.time()) * 1000)
        if milliseconds <= 0:
            self.release(token)
            return
        value = self._records.rejection(keys, until)

        def write() -> None:
            pipe = self._client.redis.pipeline(transaction=False)
            pipe.set(self._entry_key(keys), value, px=milliseconds)  # replaces the identity: a rejection is newer
            self._leases.release_in(pipe, keys)
            pipe.execute()

        self._client.call(write, "store_rejection", writes=True)

    def throttle(self, until: float) -> None:
        """Tell every instance to send nothing to Kaizala until `until` (its 429 Retry-After)."""
        milliseconds = int((min(until, time.time() + MAX_THROTTLE_SECONDS) - time.time()) * 1000)
        if milliseconds <= 0:
            return
        value = self._records.throttle(until)
        name = self._records.throttle_keys.name
        self._client.call(lambda: self._client.redis.set(name, value, px=milliseconds), "throttle", writes=True)

    # --- fleet-wide single flight (shared.fleet.lease) ---------------------------------------------------------

    def try_lead(self, token: str, lease_seconds: float) -> tuple[bool, SharedState]:
        """Take the fleet's lease for `token`, reading what the fleet knows about it (`Leases.try_lead`)."""
        return self._leases.try_lead(token, lease_seconds)

    def release(self, token: str) -> None:
        """Give the lease back without a result (the call failed): a waiter then leads instead of waiting."""
        self._leases.release(token)

    def await_result(self, token: str, deadline: float) -> SharedState:
        """Wait for the leader's result, at most until `deadline` (monotonic) (`Leases.await_result`)."""
        return self._leases.await_result(token, deadline)

    # --- purges (shared.fleet.purges) --------------------------------------------------------------------------

    def purge_user(self, user_id: str) -> int | None:
        """Delete the user's shared entries and tell every instance; the number deleted, None if Redis failed."""
        return self._purges.purge_user(user_id)

    def purge_all(self) -> int | None:
        """Delete every shared identity of this deployment and tell every instance; None if Redis failed."""
        return self._purges.purge_all()

    def subscribe(self, on_purge: OnPurge) -> None:
        """Call `on_purge(user_tag)` (or `on_purge(None)`: forget everything) whenever a purge is published."""
        self._purges.subscribe(on_purge)

    def user_tag(self, user_id: str) -> str:
        """The tag `on_purge` receives for `user_id`: compare it with the tags of locally cached identities."""
        return self._purges.user_tag(user_id)

    def close(self) -> None:
        self._purges.close()
        self._client.close()

    def check(self) -> "list[Step]":
        """`python -m shared.purge --check`: each step of using Redis, named, not swallowed (`shared.fleet.check`)."""
        return check(self._client, self._records)

    @property
    def health_cause(self) -> str | None:
        """What is wrong with Redis now, in the words the WARNING used; None while it works."""
        cause = self._client.health.cause
        return None if cause is None else cause.text

    @property
    def kind(self) -> str | None:
        """What the server is ("cluster" or "single endpoint"), once detected."""
        return self._client.kind

    def _entry_key(self, keys: TokenKeys) -> str:
        return self._records.entry_key(keys.name)


def credential_provider(settings: FleetSettings) -> "CredentialProvider | None":
    """How the app signs in to Redis: None for the URL's own credentials; with TOKEN_CACHE_REDIS_AUTH=entra, the
    app's managed identity through redis-entraid (imported only then)."""
    if settings.redis_auth != "entra":
        return None
    from .entra import credential_provider as entra  # noqa: PLC0415 - azure-identity only when it signs in

    return entra(settings.azure_client_id)
