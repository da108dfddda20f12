"""The fleet cache's Redis side: identities, rejections, the throttle, leases and purges shared by every instance.

Redis is an optimisation, never a dependency: every method swallows Redis's failures and answers "nothing shared"
(`lookup` empty, `try_lead` True so the caller leads locally), each call is bounded by the per-operation timeout
(TOKEN_CACHE_REDIS_TIMEOUT_MS, no client-side retries), and a circuit breaker skips Redis for a while after a few
consecutive failures. What is written is sealed by `shared.fleet.sealing`: names and values reveal nothing, and a
value that does not open is a miss. Every command names one key, so a cluster proxy never sees a cross-slot
command.

One job per module: `client` (the connection, behind `breaker`), `records` (key names, sealed values and their
one reading), `sealing`, `lease` (fleet-wide single flight), `purges`, and `cache` (`FleetCache`, composing them).
Importing this package imports redis-py and cryptography: only code that runs with Redis on imports it.

Times: `expires_at`, `until` and the `*_until` fields are wall clock (`time.time()`, like a JWT's exp);
`deadline` is `time.monotonic()`.
"""

from .cache import FleetCache
from .records import NOTHING, SharedState

__all__ = ["NOTHING", "FleetCache", "SharedState"]
