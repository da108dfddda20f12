"""The fleet's connection to Redis: the right redis-py client for the server (a Redis Cluster, or one endpoint: a
single node or a proxy in front of shards), TLS, timeouts, no retries, and every command behind the breaker.

The server's kind is detected on first use (`INFO cluster`): a cluster gets redis-py's `RedisCluster`, which follows
the cluster's slots from the one node the URL names; anything else a plain client. A cluster redirect seen later
(the server became a cluster) makes the next call detect again.

Redis failing must never fail a request: `call` swallows the failure and answers None, each command is bounded by
the per-operation timeout (TOKEN_CACHE_REDIS_TIMEOUT_MS, no client-side retries), and after a few consecutive
failures the breaker skips Redis for a while; `health` tells the log why, once per change. A forked child starts
again from fresh locks, connections and threads: every part holding such state registers with
`reset_in_forked_child`.
"""

import functools
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import REDIS_ALLOWED_KEYS, RedisCluster
from redis.credentials import CredentialProvider
from redis.retry import Retry

from .. import telemetry
from ..forking import reset_in_child
from .breaker import Breaker
from .health import Health, describe

log = logging.getLogger("kaizala_auth")

T = TypeVar("T")
Client = redis.Redis | RedisCluster
CLUSTER, SINGLE = "cluster", "single endpoint"


class RedisClient:
    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int,
        max_connections: int,
        failures_to_open: int,
        open_seconds: float,
        ca_file: str | None = None,
        credential_provider: CredentialProvider | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.where = f"{parts.hostname}:{parts.port or 6379}"  # for logs: the URL itself holds the access key
        self.timeout_ms = timeout_ms
        self.timeout = timeout_ms / 1000
        self.open_seconds = open_seconds
        self._url = url
        self._tls = parts.scheme == "rediss"
        self._ca_file = ca_file
        self._credential_provider = credential_provider
        self._pool_class = redis.BlockingConnectionPool
        if credential_provider is not None:
            # Signing in with a token that renews: a pool whose connections sign in again with each renewal.
            from .entra import BlockingConnectionPool  # noqa: PLC0415 - only with TOKEN_CACHE_REDIS_AUTH=entra

            self._pool_class = BlockingConnectionPool
        self._max_connections = max_connections
        self.breaker = Breaker(failures_to_open=failures_to_open, open_seconds=open_seconds)
        self.health = Health(self.where, reports=True)
        self._detect_lock = threading.Lock()
        self.kind: str | None = None  # CLUSTER or SINGLE once detected
        self._redis: Client | None = None
        reset_in_forked_child(self)

    @property
    def redis(self) -> Client:
        """The client for the server's kind, detected (one round trip) the first time it is needed."""
        client = self._redis
        if client is not None:
            return client
        with self._detect_lock:
            if self._redis is None:
                self._redis = self.connect(self.timeout, self._max_connections)
            return self._redis

    def connect(self, timeout: float, max_connections: int, health_check_seconds: int = 0) -> Client:
        """A client with pools of its own (the purge subscription needs one: a subscribed connection can do
        nothing else), of the server's kind."""
        options = self._options(timeout, max_connections, health_check_seconds)
        if self.kind is None:
            self.kind = _detect(self._url, options, self._pool_class)
        if self.kind == CLUSTER:
            # Every node gets a blocking pool of its own; no retries at the cluster level either (a retry would
            # double what a failing node costs a request). MOVED and ASK are still followed: they are answers.
            # RedisCluster passes on only the options it knows: the others go to each node's pool directly.
            passed = {name: value for name, value in options.items() if name in REDIS_ALLOWED_KEYS}
            node_pool = functools.partial(self._pool_class, **_without(options, passed))
            return RedisCluster(
                url=self._url,
                connection_pool_class=node_pool,
                retry=Retry(NoBackoff(), 0),
                require_full_coverage=False,
                **passed,
            )
        pool = self._pool_class.from_url(self._url, retry=Retry(NoBackoff(), 0), **options)
        # The provider goes to the client as well: that is where redis-py registers the pool for renewals.
        return redis.Redis(connection_pool=pool, credential_provider=self._credential_provider)

    def _options(self, timeout: float, max_connections: int, health_check_seconds: int) -> dict[str, Any]:
        options: dict[str, Any] = {
            # Blocking: a burst beyond max_connections waits (at most one timeout) for a connection rather than
            # opening without bound; a burst that cannot get one counts as Redis being too slow.
            "max_connections": max_connections,
            "timeout": timeout,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "health_check_interval": health_check_seconds,
        }
        if self._tls:
            # Certificate and host name are checked by redis-py's defaults; the version floor is ours to state.
            options |= {"ssl_min_version": ssl.TLSVersion.TLSv1_2, "ssl_cert_reqs": "required"}
            options |= {"ssl_check_hostname": True}
            if self._ca_file is not None:
                options["ssl_ca_certs"] = self._ca_file
        if self._credential_provider is not None:
            options["credential_provider"] = self._credential_provider
        return options

    def call(self, operation: Callable[[], T], name: str, *, writes: bool = False) -> T | None:
        """`operation()`, or None when it fails or the breaker skips Redis. `name`: what telemetry calls the round
        trip (the fleet cache's part: lookup, store, try_lead, ...). `writes`: it changes what Redis holds (its
        success proves the app may write, which a read's does not)."""
        if not self.breaker.allow():
            return None
        trip = telemetry.redis_round_trip(name)  # a span and a duration
        try:
            result = operation()
        except Exception as error:  # noqa: BLE001 - Redis failing must never fail a request
            trip.end(error)
            self.failed(error, name)
            return None
        trip.end()
        self.breaker.succeeded()
        self.health.succeeded(writes=writes, operation=name)
        return result

    def failed(self, error: BaseException, operation: str | None = None) -> None:
        cause = describe(error, timeout_ms=self.timeout_ms)
        log.debug("token cache Redis at %s: %s", self.where, cause.kind)
        if cause.kind == "cluster_redirect" and self.kind != CLUSTER:
            self._forget_client()  # the server is a cluster now: the next call detects it again
        opened = self.breaker.failed()
        self.health.failed(
            cause,
            opened=opened,
            open_seconds=self.open_seconds,
            failures=self.breaker.failures_to_open,
            operation=operation,
        )
        if opened and self.kind != CLUSTER:
            # Idle connections to a server that went away would each fail once more after it returns,
            # reopening the breaker: start again from fresh ones. (RedisCluster renews its own on failure.)
            client = self._redis
            if isinstance(client, redis.Redis):
                client.connection_pool.disconnect(inuse_connections=False)

    def _forget_client(self) -> None:
        with self._detect_lock:
            client, self._redis, self.kind = self._redis, None, None
        if client is not None:
            close(client)

    def close(self) -> None:
        client = self._redis
        if client is not None:
            close(client)

    def after_fork_in_child(self) -> None:
        self.breaker.reset()
        self.health.reset()
        self._detect_lock = threading.Lock()
        # The parent's client may hold locks taken by other threads at fork (a cluster's topology refresh):
        # the child makes its own on first use (not closed here: its sockets are the parent's).
        self._redis = None


def close(client: Client) -> None:
    """Close every connection of `client`, whichever kind it is."""
    if isinstance(client, RedisCluster):
        client.close()
    else:
        client.connection_pool.disconnect()


def _without(options: dict[str, Any], passed: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if name not in passed}


def _detect(url: str, options: dict[str, Any], pool_class: type[redis.BlockingConnectionPool]) -> str:
    """CLUSTER when the server the URL names is a Redis Cluster node, else SINGLE (a node, or a proxy that hides
    the shards behind one endpoint, as Azure's Enterprise clustering policy does). `INFO cluster` first; a user
    denied INFO (it is @dangerous) is asked `CLUSTER INFO`, which a server without cluster support refuses."""
    probe_options = options | {"max_connections": 1}
    pool = pool_class.from_url(url, retry=Retry(NoBackoff(), 0), **probe_options)
    probe = redis.Redis(connection_pool=pool, credential_provider=options.get("credential_provider"))
    try:
        try:
            info: dict[str, Any] = probe.info("cluster")  # type: ignore[assignment]
            return CLUSTER if str(info.get("cluster_enabled", 0)) == "1" else SINGLE
        except redis.exceptions.NoPermissionError:
            try:
                probe.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            except redis.exceptions.ResponseError:  # "cluster support disabled", or denied too
                return SINGLE
            return CLUSTER
    finally:
        pool.disconnect()


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


def reset_in_forked_child(part: ForkAware) -> None:
    """Call `part.after_fork_in_child()` in a forked child: locks held by other threads at fork stay held there,
    and threads other than the forking one do not exist there."""
    reset_in_child(part, _after_fork)


def _after_fork(part: ForkAware) -> None:
    part.after_fork_in_child()
