"""The fleet cache's Redis side: identities, rejections, the throttle, leases and purges shared by every instance.

Redis is an optimisation, never a dependency: every method swallows Redis's failures and answers "nothing shared"
(`lookup` empty, `try_lead` True so the caller leads locally), each call is bounded by the per-operation timeout
(TOKEN_CACHE_REDIS_TIMEOUT_MS, no client-side retries), and a circuit breaker skips Redis for a while after a few
consecutive failures. What is written is sealed by `shared.sealing`: names and values reveal nothing, and a value
that does not open is a miss. Every command names one key, so a cluster proxy never sees a cross-slot command.

Times: `expires_at`, `until` and the `*_until` fields are wall clock (`time.time()`, like a JWT's exp);
`deadline` is `time.monotonic()`.
"""

import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .breaker import Breaker
from .identity import KAIZALA, Identity, Provider
from .sealing import Sealed, Sealer, TokenKeys
from .settings import TOKEN_LIFETIME_SECONDS, FleetSettings

log = logging.getLogger("kaizala_auth")

T = TypeVar("T")
OnPurge = Callable[[str | None], None]

MAX_REJECTION_SECONDS = 60.0  # a rejection read back is trusted for no longer, whatever Redis says
MAX_THROTTLE_SECONDS = 300.0  # Kaizala's largest Retry-After we honour (kaizala.MAX_RETRY_AFTER_SECONDS)
INDEX_MILLISECONDS = (TOKEN_LIFETIME_SECONDS + 60) * 1000  # outlives every entry it lists
ALL = "*"
MAX_LEASE_MILLISECONDS = 60_000  # KAIZALA_TIMEOUT_SECONDS is at most 60
_REJECTED = "rejected"
_THROTTLE = "throttle"
_POLL_FIRST, _POLL_MAX = 0.002, 0.010  # a waiter sees the result at most ~10 ms late; Redis barely notices
# Delete the lease only if it is still ours: a leader whose lease ran out must not end the next leader's.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


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


class FleetCache:
    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_ms: int = 100,
        max_connections: int = 64,
        failures_to_open: int = 3,
        open_seconds: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        self.where = f"{parts.hostname}:{parts.port or 6379}"  # for logs: the URL itself holds the access key
        self.timeout = timeout_ms / 1000
        self._url = url
        self._sealer = Sealer(secret)
        self._ns = self._sealer.namespace
        self._throttle_keys = self._sealer.deployment_keys(_THROTTLE)
        self._channel = f"{self._ns}:purge"
        self.breaker = Breaker(
            f"token cache Redis at {self.where}", failures_to_open=failures_to_open, open_seconds=open_seconds
        )
        self._redis = self._client(self.timeout, max_connections)
        self._leases: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._on_purge: tuple[OnPurge, ...] = ()  # one per in-process cache (Kaizala's, Teams')
        self._listener: threading.Thread | None = None
        self._listener_pid = 0
        self._stop = threading.Event()
        self.subscribed = threading.Event()  # set while the purge subscription is live (tests wait on it)
        _forget_after_fork.add(self)

    @classmethod
    def from_settings(cls, settings: FleetSettings) -> "FleetCache | None":
        """The fleet cache the settings ask for; None when TOKEN_CACHE_REDIS_URL is unset."""
        if settings.redis_url is None or settings.redis_secret is None:
            return None
        return cls(settings.redis_url, settings.redis_secret, timeout_ms=settings.redis_timeout_ms)

    def _client(self, timeout: float, max_connections: int, health_check_seconds: int = 0) -> "redis.Redis":
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

    # --- identities, rejections, the throttle ------------------------------------------------------------------

    def lookup(self, token: str) -> SharedState:
        """The token's shared identity or rejection (they share one key): one GET, the cheapest round trip.
        NOTHING when Redis fails or is skipped. The fleet's throttle is read where it matters, before anyone
        calls Kaizala (`try_lead`, `await_result`)."""
        self._ensure_listener()
        keys = self._sealer.keys(token)
        value = self._call(lambda: self._redis.get(self._entry_key(keys)))
        return NOTHING if value is None else self._state(keys, [value, None])

    def store(self, token: str, identity: Identity, expires_at: float) -> None:
        """Share an identity until `expires_at`, list it in its user's purge index, and end our lease if any."""
        keys = self._sealer.keys(token)
        milliseconds = int((expires_at - time.time()) * 1000)
        if milliseconds <= 0:  # nothing to share (caching off, or the token expires now): still end our lease
            self.release(token)
            return

        def write() -> None:
            value = self._sealer.seal_identity(keys, identity, expires_at)
            index = self._index_key(self._sealer.user_tag(identity.id))
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._entry_key(keys), value, px=milliseconds)
            pipe.sadd(index, keys.name)
            pipe.pexpire(index, INDEX_MILLISECONDS)
            self._release_in(pipe, keys)  # after the result, so a waiter never sees neither
            pipe.execute()

        self._call(write)

    def store_rejection(self, token: str, until: float) -> None:
        """Share Kaizala's rejection of `token` until `until` (at most MAX_REJECTION_SECONDS), drop its shared
        identity (a refresh found it revoked: no instance may keep serving it), and end our lease."""
        keys = self._sealer.keys(token)
        milliseconds = int((min(until, time.time() + MAX_REJECTION_SECONDS) - time.time()) * 1000)
        if milliseconds <= 0:
            self.release(token)
            return
        value = self._sealer.seal_until(keys, _REJECTED, until)

        def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._entry_key(keys), value, px=milliseconds)  # replaces the identity: a rejection is newer
            self._release_in(pipe, keys)
            pipe.execute()

        self._call(write)

    def throttle(self, until: float) -> None:
        """Tell every instance to send nothing to Kaizala until `until` (its 429 Retry-After)."""
        milliseconds = int((min(until, time.time() + MAX_THROTTLE_SECONDS) - time.time()) * 1000)
        if milliseconds <= 0:
            return
        value = self._sealer.seal_until(self._throttle_keys, _THROTTLE, until)
        self._call(lambda: self._redis.set(self._throttle_keys.name, value, px=milliseconds))

    # --- fleet-wide single flight ------------------------------------------------------------------------------

    def try_lead(self, token: str, lease_seconds: float) -> tuple[bool, SharedState]:
        """Take the fleet's lease for `token` and, in the same round trip, read what the fleet knows about it.

        (True, state): we hold the lease; if `state` already holds what the caller needs (a leader finished just
        before us), the caller uses it and gives the lease back (`release`). (False, state): another instance is
        calling; `await_result` waits for it. (True, NOTHING) when Redis fails or is skipped: lead locally."""
        keys = self._sealer.keys(token)
        owner = os.urandom(16)
        milliseconds = max(1, int(lease_seconds * 1000))

        def take() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._lease_key(keys), owner, nx=True, px=milliseconds)
            pipe.get(self._entry_key(keys))
            pipe.get(self._throttle_keys.name)
            return pipe.execute()

        replies = self._call(take)
        if replies is None:
            return True, NOTHING
        # SET NX answers None when the key exists.
        taken, state = bool(replies[0]), self._state(keys, replies[1:])
        if taken:
            with self._lock:
                self._leases[keys.name] = owner
        return taken, state

    def release(self, token: str) -> None:
        """Give the lease back without a result (the call failed): a waiter then leads instead of waiting."""
        keys = self._sealer.keys(token)

        def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            if self._release_in(pipe, keys):
                pipe.execute()

        self._call(write)

    def await_result(self, token: str, deadline: float) -> SharedState:
        """Wait for the leader's result: returns as soon as an entry, a rejection or a throttle appears, the lease
        disappears (leader done, failed or dead), Redis fails, or `deadline` (monotonic) passes."""
        keys = self._sealer.keys(token)
        pause = _POLL_FIRST
        while True:
            replies = self._call(lambda: self._read(keys))
            if replies is None:
                return NOTHING
            state = self._state(keys, replies)
            # A lease lives at most one deadline: one without expiry, or longer, was not written by an instance
            # (someone with write access to Redis); it must not make anyone wait.
            leased = 0 <= int(replies[2]) <= MAX_LEASE_MILLISECONDS  # -2: no lease; -1: one without expiry
            remaining = deadline - time.monotonic()
            if state != NOTHING or not leased or remaining <= 0:
                return state
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)

    # --- purge -------------------------------------------------------------------------------------------------

    def purge_user(self, user_id: str) -> int | None:
        """Delete the user's shared entries and tell every instance; the number deleted, None if Redis failed.
        Kaizala ids are matched as written; Teams object ids are cached lower-cased, so the lower-case form of
        `user_id` is purged too (a GUID copied from a portal may be in capitals)."""
        tags = [self._sealer.user_tag(variant) for variant in dict.fromkeys((user_id, user_id.lower()))]

        def purge() -> int:
            deleted = 0
            for tag in tags:
                index = self._index_key(tag)
                names: set[bytes] = self._redis.smembers(index)  # type: ignore[assignment]  # sync client
                pipe = self._redis.pipeline(transaction=False)
                for name in names:
                    pipe.delete(f"{self._ns}:e:{name.decode()}")
                pipe.delete(index)
                pipe.publish(self._channel, tag)
                deleted += sum(pipe.execute()[: len(names)])
            return deleted

        return self._call(purge)

    def purge_all(self) -> int | None:
        """Delete every shared identity of this deployment and tell every instance; None if Redis failed."""

        def purge() -> int:
            deleted = 0
            for pattern in (f"{self._ns}:e:*", f"{self._ns}:u:*"):
                batch: list[bytes] = []
                for key in self._redis.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) == 500:
                        deleted += self._delete(batch, count=pattern.endswith("e:*"))
                        batch = []
                deleted += self._delete(batch, count=pattern.endswith("e:*"))
            self._redis.publish(self._channel, ALL)
            return deleted

        return self._call(purge)

    def subscribe(self, on_purge: OnPurge) -> None:
        """Call `on_purge(user_tag)` (or `on_purge(None)`: forget everything) from a daemon thread whenever a purge
        is published. After a lost subscription it also calls `on_purge(None)`: purges may have been missed."""
        self._on_purge = (*self._on_purge, on_purge)
        self._ensure_listener()

    def user_tag(self, user_id: str) -> str:
        """The tag `on_purge` receives for `user_id`: compare it with the tags of locally cached identities."""
        return self._sealer.user_tag(user_id)

    def close(self) -> None:
        self._stop.set()
        listener = self._listener
        if listener is not None and listener.is_alive() and listener is not threading.current_thread():
            listener.join(timeout=2)
        self._redis.connection_pool.disconnect()

    # --- internals ---------------------------------------------------------------------------------------------

    def _call(self, operation: Callable[[], T]) -> T | None:
        if not self.breaker.allow():
            return None
        try:
            result = operation()
        except Exception as error:  # noqa: BLE001 - Redis failing must never fail a request
            log.debug("token cache Redis at %s: %s", self.where, type(error).__name__)
            if self.breaker.failed(error):
                # Idle connections to a server that went away would each fail once more after it returns,
                # reopening the breaker: start again from fresh ones.
                self._redis.connection_pool.disconnect(inuse_connections=False)
            return None
        self.breaker.succeeded()
        return result

    def _read(self, keys: TokenKeys) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._entry_key(keys))
        pipe.get(self._throttle_keys.name)
        pipe.pttl(self._lease_key(keys))
        return pipe.execute()

    def _state(self, keys: TokenKeys, replies: list[Any]) -> SharedState:
        """From [entry-key value, throttle value]: the entry key holds a sealed identity or a sealed rejection."""
        now = time.time()
        value, throttle = replies[0], replies[1]
        entry = self._sealer.open_identity(keys, value)
        rejected = None if entry is not None else self._sealer.open_until(keys, _REJECTED, value)
        throttled = self._sealer.open_until(self._throttle_keys, _THROTTLE, throttle) if throttle else None
        if entry is not None and entry.expires_at <= now:
            entry = None
        return SharedState(
            entry=entry,
            rejected_until=_bounded(rejected, now, MAX_REJECTION_SECONDS),
            throttled_until=_bounded(throttled, now, MAX_THROTTLE_SECONDS),
        )

    def _release_in(self, pipe: "redis.client.Pipeline", keys: TokenKeys) -> bool:
        with self._lock:
            owner = self._leases.pop(keys.name, None)
        if owner is None:
            return False
        pipe.eval(_RELEASE, 1, self._lease_key(keys), owner)
        return True

    def _delete(self, keys: list[bytes], *, count: bool) -> int:
        if not keys:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        deleted = sum(pipe.execute())
        return deleted if count else 0

    def _entry_key(self, keys: TokenKeys) -> str:
        return f"{self._ns}:e:{keys.name}"

    def _lease_key(self, keys: TokenKeys) -> str:
        return f"{self._ns}:l:{keys.name}"

    def _index_key(self, tag: str) -> str:
        return f"{self._ns}:u:{tag}"

    # --- the purge subscription --------------------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if not self._on_purge or self._stop.is_set() or self._listener_pid == os.getpid():
            return
        with self._lock:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            self._listener = threading.Thread(target=self._listen, name="kaizala-purge-listener", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        # Its own connection: a subscribed connection can do nothing else, and waits longer than one operation.
        # A PING every few seconds of silence: a connection that died without a word (a network cut, a failover)
        # is noticed and replaced instead of waiting forever for purges that can no longer arrive.
        subscriber = self._client(max(self.timeout, 1.0), 2, health_check_seconds=5)
        pause, lost = 0.1, False
        while not self._stop.is_set():
            try:
                with subscriber.pubsub() as pubsub:  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    pubsub.subscribe(self._channel)
                    self._await_confirmation(pubsub)
                    pause = 0.1
                    if lost:
                        self._deliver(None)  # purges published while we were cut off are lost: forget everything
                    lost = True
                    while not self._stop.is_set():
                        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
                        if message is not None and message.get("type") == "message":
                            data = bytes(message["data"]).decode(errors="replace")
                            self._deliver(None if data == ALL else data)
            except Exception as error:  # noqa: BLE001 - reconnect, whatever broke
                log.debug("purge subscription to %s lost: %s", self.where, type(error).__name__)
            finally:
                self.subscribed.clear()
            self._stop.wait(pause)
            pause = min(pause * 2, 2.0)
        subscriber.connection_pool.disconnect()

    def _await_confirmation(self, pubsub: "redis.client.PubSub") -> None:
        give_up = time.monotonic() + 2.0
        while time.monotonic() < give_up:
            message = pubsub.get_message(timeout=0.25)
            if message is not None and message.get("type") == "subscribe":
                self.subscribed.set()
                return
        raise TimeoutError("no subscribe confirmation")

    def _deliver(self, tag: str | None) -> None:
        for callback in self._on_purge:
            try:
                callback(tag)
            except Exception:
                log.exception("on_purge failed")

    def _after_fork_in_child(self) -> None:
        # Locks held by other threads at fork stay held in the child, and the listener thread does not exist there.
        self._lock = threading.Lock()
        self._leases = {}
        self._listener = None
        self._listener_pid = 0
        self._stop = threading.Event()
        self.subscribed = threading.Event()
        self.breaker.reset()


def _bounded(until: float | None, now: float, longest: float) -> float | None:
    if until is None or until <= now:
        return None
    return min(until, now + longest)


_forget_after_fork: "weakref.WeakSet[FleetCache]" = weakref.WeakSet()


def _reset_after_fork() -> None:
    for fleet in list(_forget_after_fork):
        fleet._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
