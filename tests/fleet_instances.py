"""Function-app instances in one test process: each its own in-process cache and Redis connection, sharing one
Redis and one Kaizala, as instances of a scaled-out app do."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from shared.cache.admission import Admission
from shared.cache.entry import Lifetimes
from shared.cache.identity_cache import IdentityCache
from shared.fleet import FleetCache
from shared.identity import Identity
from shared.providers.kaizala import Kaizala, KaizalaClient
from tests.redis_server import SECRET


class Instance:
    """One function-app instance: its own in-process cache and Redis connection, the same Redis and Kaizala."""

    def __init__(
        self, redis_url: str, upstream_url: str, *, local_seconds: float = 30, open_seconds: float | None = 0.5
    ) -> None:
        """`open_seconds`: how long a failed Redis is skipped (None: the app's own default)."""
        options = {} if open_seconds is None else {"open_seconds": open_seconds}
        self.fleet = FleetCache(redis_url, SECRET, timeout_ms=100, **options)
        self.kaizala = KaizalaClient()
        self.cache = IdentityCache(Kaizala(upstream_url, lambda: self.kaizala), Admission(64))
        self.cache.share(self.fleet)
        self.cache.call_seconds = 2.0
        self.local_seconds = local_seconds

    def get(self, token: str, *, seconds: float = 300, refresh_ahead: bool = False) -> tuple[Identity, str]:
        self.cache.lifetimes = Lifetimes(seconds=seconds, local_seconds=self.local_seconds, refresh_ahead=refresh_ahead)
        return self.cache.get(token, time.monotonic() + 2.0)


def all_at_once(instances: list[Instance], token: str, requests: int) -> set[str]:
    """`requests` threads released together on one token, spread over the instances: the user ids answered."""
    barrier = threading.Barrier(requests)

    def call(n: int) -> str:
        barrier.wait()
        return instances[n % len(instances)].get(token)[0].id

    with ThreadPoolExecutor(requests) as pool:
        return set(pool.map(call, range(requests)))
