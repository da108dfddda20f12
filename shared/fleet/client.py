"""The fleet's connection to Redis: redis-py's pool (TLS, timeouts, no retries) and every command behind the breaker.

Redis failing must never fail a request: `call` swallows the failure and answers None, each command is bounded by
the per-operation timeout (TOKEN_CACHE_REDIS_TIMEOUT_MS, no client-side retries), and after a few consecutive
failures the breaker skips Redis for a while. A forked child starts again from fresh locks, connections and
threads: every part holding such state registers with `reset_in_forked_child`.
"""

import logging
import ssl
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import telemetry
from ..forking import reset_in_child
from .breaker import Breaker

log = logging.getLogger("kaizala_auth")

T = TypeVar("T")


class RedisClient:
    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int,
        max_connections: int,
        failures_to_open: int,
        open_seconds: float,
    ) -> None:
        parts = urlsplit(url)
        self.where = f"{parts.hostname}:{parts.port or 6379}"  # for logs: the URL itself holds the access key
        self.timeout = timeout_ms / 1000
        self._url = url
        self.breaker = Breaker(
            f"token cache Redis at {self.where}", failures_to_open=failures_to_open, open_seconds=open_seconds
        )
        self.redis = self.connect(self.timeout, max_connections)
        reset_in_forked_child(self)

    def connect(self, timeout: float, max_connections: int, health_check_seconds: int = 0) -> "redis.Redis":
        """A client with a pool of its own (the purge subscription needs one: a subscribed connection can do
        nothing else)."""
        tls: dict[str, Any] = {}
        if urlsplit(self._url).scheme == "rediss":
            # Certificate and host name are checked by redis-py's defaults; the version floor is ours to state.
            tls = {"ssl_min_version": ssl.TLSVersion.TLSv1_2, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
        # Blocking: a burst beyond max_connections waits (at most one timeout) for a connection rather than
        # opening without bound; a burst that cannot get one counts as Redis being too slow.
        pool = redis.BlockingConnectionPool.from_url(
            self._url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # a retry would double the time a failing Redis costs a request
            health_check_interval=health_check_seconds,
            **tls,
        )
        return redis.Redis(connection_pool=pool)

    def call(self, operation: Callable[[], T]) -> T | None:
        """`operation()`, or None when it fails or the breaker skips Redis."""
        if not self.breaker.allow():
            return None
        trip = telemetry.redis_round_trip()  # a span and a duration, named after our caller (lookup, store, ...)
        try:
            result = operation()
        except Exception as error:  # noqa: BLE001 - Redis failing must never fail a request
            trip.end(error)
            log.debug("token cache Redis at %s: %s", self.where, type(error).__name__)
            if self.breaker.failed(error):
                # Idle connections to a server that went away would each fail once more after it returns,
                # reopening the breaker: start again from fresh ones.
                self.redis.connection_pool.disconnect(inuse_connections=False)
            return None
        trip.end()
        self.breaker.succeeded()
        return result

    def close(self) -> None:
        self.redis.connection_pool.disconnect()

    def after_fork_in_child(self) -> None:
        self.breaker.reset()


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


def reset_in_forked_child(part: ForkAware) -> None:
    """Call `part.after_fork_in_child()` in a forked child: locks held by other threads at fork stay held there,
    and threads other than the forking one do not exist there."""
    reset_in_child(part, _after_fork)


def _after_fork(part: ForkAware) -> None:
    part.after_fork_in_child()
