"""Signing in to Azure Managed Redis with the app's managed identity (TOKEN_CACHE_REDIS_AUTH=entra), through
redis-entraid, Redis' own Microsoft Entra ID credential provider.

Each connection signs in as the identity's object id (the token's `oid`) with the token itself as the password.
Tokens come from the managed identity endpoint Azure gives the app (IDENTITY_ENDPOINT and IDENTITY_HEADER), asked for
the `https://redis.azure.com` resource, for the system-assigned identity or, given a client id (AZURE_CLIENT_ID),
a user-assigned one. redis-entraid renews the token when 60% of its life is gone (a 24-hour token about 9.6 hours
before it expires); each renewal is handed to every connection, which signs in again (AUTH) before its next command.

What this module adds around redis-entraid, and why (redis-py 5.3 to 7.4 and redis-entraid 1.2 behave so):

- One token stream per identity in a process, shared by every client (the fleet cache's pool, the purge
  subscription's, a cluster's nodes): redis-py keeps one renewal callback per provider, so a second client would
  silently take the first one's; and every client signs in with the same, newest token.
- A connection opened between renewals signs in with the newest token instead of asking the endpoint each time.
- A renewal that fails is retried (redis-entraid's stream stops for good at its first failure), and a re-sign-in
  that fails for one pool never stops the stream for the others.
- `BlockingConnectionPool`: redis-py's own cannot re-authenticate (its renewal callback fails with AttributeError
  and the stream stops); this one marks every connection, and each signs in again when it is next taken.
- A failed sign-in raises `SignInFailed` (a redis AuthenticationError), with the endpoint's reason and never a
  token. Nothing here logs a token.

redis-entraid (and MSAL, azure-identity) are imported only when a provider is made: with access keys they are
never loaded.
"""

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from redis.credentials import StreamingCredentialProvider

from ..forking import reset_in_child

if TYPE_CHECKING:
    from redis.auth.token import TokenInterface

log = logging.getLogger("kaizala_auth")

RESOURCE = "https://redis.azure.com"  # Azure Managed Redis (and Azure Cache for Redis): scope .../.default
SIGN_IN_FAILED = "Microsoft Entra ID sign-in failed"
REFRESH_RATIO = 0.6  # renew when 60% of a token's life has passed
SIGN_IN_TIMEOUT_SECONDS = 5.0  # one request to the managed identity endpoint (on this machine in Azure)
SIGN_IN_ATTEMPTS = 2  # redis-entraid's retries after a failed request (it waits RETRY_DELAY_MS between them)
RETRY_DELAY_MS = 200
QUIET_AFTER_FAILURE_SECONDS = 1.0  # a connection opened just after a failed sign-in fails at once, without asking
RENEWAL_RETRY_SECONDS = (1.0, 30.0)  # a failed renewal is tried again after a quarter of the time left, in this range


class SignInFailed(redis.exceptions.AuthenticationError):
    """No token from the managed identity endpoint (down, refusing the app, or no such identity)."""


def credential_provider(client_id: str | None) -> "Credentials":
    """The provider for the app's managed identity: user-assigned when `client_id` (AZURE_CLIENT_ID) is given,
    system-assigned otherwise. Pass it both to the pool (connections sign in) and to the client constructor
    (`redis.Redis(connection_pool=pool, credential_provider=it)`: that registers the renewals)."""
    key = client_id or None
    with _lock:
        if key not in _providers:
            _providers[key] = Credentials(key)
        return _providers[key]


class BlockingConnectionPool(redis.BlockingConnectionPool):
    """redis-py's BlockingConnectionPool, with the re-authentication its parent's does not manage for it: a renewed
    token marks every connection (no I/O on the renewal thread), and a marked connection signs in again (AUTH) when
    it is next taken from the pool, on the thread that takes it, before its command. A connection whose AUTH fails
    reconnects (signing in afresh) once; failing that, taking it fails."""

    def re_auth_callback(self, token: "TokenInterface") -> None:
        for connection in list(self._connections):
            connection.set_re_auth_token(token)

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        try:
            try:
                connection.re_auth()
            except (redis.exceptions.RedisError, OSError):
                connection.disconnect()
                connection.connect()  # signs in with the newest token
                connection.set_re_auth_token(None)  # nothing left to send
        except BaseException:
            connection.disconnect()
            self.release(connection)  # type: ignore[no-untyped-call]
            raise
        return connection


class Credentials(StreamingCredentialProvider):
    """One identity's token stream, shared by every client of this process (see the module's docstring)."""

    def __init__(self, client_id: str | None) -> None:
        self.client_id = client_id
        # Renewal callbacks, one per redis-py listener: each a getter of the callback (None once its client is gone).
        self._listeners: dict[object, Callable[[], Callable[[Any], None] | None]] = {}
        self._reset()
        reset_in_child(self, Credentials._reset)

    def _reset(self) -> None:
        """Also in a forked child: redis-entraid's renewal thread does not exist there."""
        self._lock = threading.Lock()
        self._inner: Any = None  # redis-entraid's EntraIdCredentialsProvider, made on first use
        self._latest: TokenInterface | None = None
        self._renewing = False  # the inner provider's renewal stream is running
        self._quiet_until = 0.0
        self._reason = "no token yet"  # why the last sign-in failed (never a token)
        self._retry: threading.Timer | None = None
        self._closed = False

    # --- what redis-py calls ---------------------------------------------------------------------------------------

    def get_credentials(self) -> tuple[str, str]:
        """(object id, token) for a connection signing in: the newest token while it has a fair part of its life
        left, else a fresh one from the endpoint. SignInFailed when there is none."""
        with self._lock:
            if self._closed:
                raise SignInFailed(f"{SIGN_IN_FAILED}: its provider was closed")
            token = self._latest
            if token is not None and _fresh(token):
                return _pair(token)
            if time.monotonic() < self._quiet_until:
                raise SignInFailed(f"{SIGN_IN_FAILED}: {self._reason}")
            return _pair(self._sign_in())

    def on_next(self, callback: Callable[[Any], None]) -> None:
        """Keep `callback` for every renewal. redis-py registers one per client (and per subscription); keyed by
        the redis-py listener it belongs to, weakly, so a client that is gone is not called."""
        owner = getattr(callback, "__self__", None)
        with self._lock:
            if owner is None:
                self._listeners[callback] = lambda: callback
            else:
                self._listeners[weakref.ref(owner)] = weakref.WeakMethod(callback)

    def on_error(self, callback: Callable[[Exception], None]) -> None:
        """redis-py's error callbacks only raise, on redis-entraid's thread: failures are handled here instead."""

    def is_streaming(self) -> bool:
        return self._renewing

    def close(self) -> None:
        """Stop renewing (the process is done with Redis, or a test is)."""
        with self._lock:
            inner, retry = self._inner, self._retry
            self._inner, self._retry, self._latest, self._renewing, self._closed = None, None, None, False, True
        if retry is not None:
            retry.cancel()
        manager = getattr(inner, "_token_mgr", None)  # redis-entraid's TokenManager: stop() cancels its timer
        if manager is not None:
            manager.stop()

    # --- the stream ------------------------------------------------------------------------------------------------

    def _sign_in(self) -> "TokenInterface":
        """A token from the endpoint (through redis-entraid, which starts its renewal stream on the first one).
        Called with the lock held."""
        from redis.auth.token import JWToken  # noqa: PLC0415 - loaded only with TOKEN_CACHE_REDIS_AUTH=entra

        if self._inner is None or not self._renewing:
            self._inner = self._make_inner()
        try:
            _, value = self._inner.get_credentials()
            token = JWToken(value)
        except Exception as error:  # noqa: BLE001 - whatever redis-entraid, MSAL or requests raise: no token
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE_SECONDS
            self._reason = _reason(error)
            raise SignInFailed(f"{SIGN_IN_FAILED}: {self._reason}") from None
        self._renewing = True
        self._latest = token
        return token

    def _make_inner(self) -> Any:
        # Loaded only with TOKEN_CACHE_REDIS_AUTH=entra: redis-entraid brings MSAL and azure-identity along.
        import requests  # noqa: PLC0415
        from msal import (  # type: ignore[import-untyped]  # noqa: PLC0415
            ManagedIdentityClient,
            SystemAssignedManagedIdentity,
            UserAssignedManagedIdentity,
        )
        from redis.auth.token_manager import RetryPolicy, TokenManagerConfig  # noqa: PLC0415
        from redis_entraid.cred_provider import EntraIdCredentialsProvider  # type: ignore[import-untyped]  # noqa: PLC0415
        from redis_entraid.identity_provider import ManagedIdentityProvider  # type: ignore[import-untyped]  # noqa: PLC0415

        class Session(requests.Session):
            """Every request to the endpoint bounded in time (redis-entraid's own session waits forever)."""

            def request(self, *args: Any, **kwargs: Any) -> requests.Response:
                kwargs.setdefault("timeout", SIGN_IN_TIMEOUT_SECONDS)
                return super().request(*args, **kwargs)

        identity = (
            UserAssignedManagedIdentity(client_id=self.client_id) if self.client_id else SystemAssignedManagedIdentity()
        )
        # What redis_entraid.cred_provider.create_from_managed_identity builds, with a session that has a timeout.
        client = ManagedIdentityClient(identity, http_client=Session())
        config = TokenManagerConfig(
            expiration_refresh_ratio=REFRESH_RATIO,
            lower_refresh_bound_millis=0,
            token_request_execution_timeout_in_ms=int(SIGN_IN_TIMEOUT_SECONDS * 1000),
            retry_policy=RetryPolicy(max_attempts=SIGN_IN_ATTEMPTS, delay_in_ms=RETRY_DELAY_MS),
        )
        inner = EntraIdCredentialsProvider(ManagedIdentityProvider(client, RESOURCE), config)
        inner.on_next(lambda token, inner=inner: self._renewed(inner, token))
        inner.on_error(lambda error, inner=inner: self._renewal_failed(inner, error))
        return inner

    def _renewed(self, inner: Any, token: "TokenInterface") -> None:
        """redis-entraid's thread: a renewed token. Every client's connections sign in with it."""
        with self._lock:
            if inner is not self._inner:
                return  # a stream replaced after a failure
            self._latest = token
            listeners = list(self._listeners.items())
        for key, callback in listeners:
            alive = callback()
            if alive is None:
                with self._lock:
                    self._listeners.pop(key, None)
                continue
            try:
                alive(token)
            except Exception as error:  # noqa: BLE001 - one client's failure must not stop the others' renewals
                log.warning(
                    "token cache Redis: signing in again with the renewed Microsoft Entra ID token failed for a "
                    "connection pool (%s): its connections sign in again when they reconnect",
                    type(error).__name__,
                )

    def _renewal_failed(self, inner: Any, error: Exception) -> None:
        """redis-entraid's thread: its renewal failed and its stream has stopped. Handled on another thread: this
        one may be the first renewal, which a connection signing in (holding the lock) is waiting for."""
        reason = _reason(error)
        threading.Thread(target=self._after_failure, args=(inner, reason), name="entra-sign-in", daemon=True).start()

    def _after_failure(self, inner: Any, reason: str) -> None:
        with self._lock:
            if inner is not self._inner:
                return  # a stream replaced meanwhile
            self._renewing = False
            self._reason = reason
            delay = self._retry_delay()
        log.warning(
            "token cache Redis: %s while renewing the token (%s): trying again in %.1f s; connections keep the "
            "current token until it expires",
            SIGN_IN_FAILED,
            reason,
            delay,
        )
        self._schedule_retry(delay)

    def _retry_delay(self) -> float:
        """A quarter of the current token's time left, within RENEWAL_RETRY_SECONDS. Called with the lock held."""
        left = self._latest.ttl() / 1000 if self._latest is not None else 0.0
        low, high = RENEWAL_RETRY_SECONDS
        return min(max(left / 4, low), high)

    def _schedule_retry(self, delay: float) -> None:
        retry = threading.Timer(delay, self._retry_renewal)
        retry.daemon = True
        with self._lock:
            if self._retry is not None:
                self._retry.cancel()
            self._retry = retry
        retry.start()

    def _retry_renewal(self) -> None:
        with self._lock:
            if self._renewing or self._closed:
                return  # a connection signing in has restarted the stream meanwhile, or it is closed
            try:
                token: TokenInterface | None = self._sign_in()
            except SignInFailed:
                token = None
            inner, reason, delay = self._inner, self._reason, self._retry_delay()
        if token is None:
            log.warning("token cache Redis: %s again (%s): trying again in %.1f s", SIGN_IN_FAILED, reason, delay)
            self._schedule_retry(delay)
            return
        log.warning("token cache Redis: signed in with Microsoft Entra ID again: renewals go on")
        self._renewed(inner, token)


_lock = threading.Lock()
_providers: dict[str | None, Credentials] = {}


def close_all() -> None:
    """Stop and forget every provider: the next `credential_provider` call starts a new stream."""
    with _lock:
        providers = list(_providers.values())
        _providers.clear()
    for provider in providers:
        provider.close()


def _fresh(token: "TokenInterface") -> bool:
    """More than a quarter of its life left: a connection signing in with it will be re-signed by the next
    renewal (due when 40% is left) long before it expires."""
    issued = token.try_get("iat")
    lifetime = token.get_expires_at_ms() - float(issued) * 1000 if issued else 0.0
    return token.ttl() > max(lifetime, 0.0) / 4


def _pair(token: "TokenInterface") -> tuple[str, str]:
    return str(token.try_get("oid")), token.get_value()


def _reason(error: BaseException) -> str:
    """What went wrong, for a log line or an exception: the endpoint's own words (MSAL puts its status and message
    there), never a token (which would begin eyJ)."""
    text = " ".join(str(error).split())[:300]
    if not text or "eyJ" in text:
        return type(error).__name__
    return f"{type(error).__name__}: {text}"
