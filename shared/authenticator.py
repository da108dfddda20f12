"""Who is calling: the checks in the documented order, and the one place that composes the pieces.

`Authenticator` is the composition root. It owns the process's upstream slots (`Admission`), one identity cache
per provider, the HTTP clients and the fleet's Redis connection, and reconfigures them when the settings change
(not on every request). Tests reach everything through `root()`.

A request's token goes one way: request -> local checks -> the provider that claims it -> its cache (this
process, then the fleet, then the provider itself) -> the policy.
"""

import logging
import threading
import time
from typing import TYPE_CHECKING

import azure.functions as func

from . import policy, request_token, telemetry
from .cache.admission import Admission
from .cache.entry import Lifetimes
from .cache.identity_cache import IdentityCache, cache_key
from .errors import ApiError
from .identity import KAIZALA, TEAMS, Identity, Provider
from .providers.base import IdentityProvider
from .providers.kaizala import Kaizala, KaizalaClient
from .settings import FleetSettings, Settings, current_settings

if TYPE_CHECKING:
    from .fleet import FleetCache
    from .providers.teams import TeamsVerifier

log = logging.getLogger("kaizala_auth")


class Authenticator:
    def __init__(self) -> None:
        self.admission = Admission()  # KAIZALA_MAX_CONCURRENT_CALLS for every provider's calls together
        self._lock = threading.Lock()  # configuration
        self._once = threading.Lock()  # the clients below are each made once, on first use
        self._settings: Settings | None = None
        self._kaizala_client: KaizalaClient | None = None
        self._teams_verifier: TeamsVerifier | None = None
        self._fleet_settings = FleetSettings()
        self.fleet: FleetCache | None = None
        self.caches: dict[Provider, IdentityCache] = {}
        self._order: tuple[IdentityCache, ...] = ()  # who is asked to claim a token, in order

    # --- configuration -----------------------------------------------------------------------------------------

    def configure(self, settings: Settings) -> None:
        """Apply `settings` (parsed once per distinct environment, so `is` tells a change)."""
        if settings is self._settings:
            return
        with self._lock:
            if settings is self._settings:
                return
            self._apply(settings)
            self._settings = settings

    def _apply(self, settings: Settings) -> None:
        self.admission.resize(settings.max_concurrent_calls)
        fleet = self._fleet_for(settings.fleet)
        lifetimes = Lifetimes(
            seconds=settings.cache_seconds,
            local_seconds=settings.fleet.local_cache_seconds if fleet is not None else float("inf"),
            refresh_ahead=settings.refresh_ahead,
        )
        providers: list[IdentityProvider] = []
        for name in settings.providers:  # AUTH_PROVIDERS, in the order a token is offered
            if name == TEAMS and settings.teams is not None:
                from .providers.teams import Teams  # noqa: PLC0415 - PyJWT and the key client load only with Teams

                providers.append(Teams(settings.teams, self.teams_verifier))
            elif name == KAIZALA:
                providers.append(Kaizala(settings.identity_url, self.kaizala_client))
        for provider in providers:
            cache = self.caches.get(provider.name)
            if cache is None:
                cache = self.caches[provider.name] = IdentityCache(provider, self.admission)
            cache.provider = provider
            cache.lifetimes = lifetimes
            cache.call_seconds = settings.timeout_seconds
            cache.admit = lambda identity: policy.allows(identity, settings)
            cache.resize(settings.cache_max_entries)
            cache.share(fleet)
        self._order = tuple(self.caches[provider.name] for provider in providers)

    def _fleet_for(self, settings: FleetSettings) -> "FleetCache | None":
        """The process's one connection to the fleet's Redis (None: Redis off). A change of settings closes the
        old one. shared.fleet (redis-py, cryptography) is imported only when Redis is on."""
        if settings == self._fleet_settings:
            return self.fleet
        if self.fleet is not None:
            self.fleet.close()
        self.fleet = None
        if settings.redis_url is not None:
            from .fleet import FleetCache  # noqa: PLC0415 - keeps redis-py off the cold start without Redis

            self.fleet = FleetCache.from_settings(settings)
            log.info("token cache shared through Redis at %s", self.fleet.where if self.fleet else "?")
            if self.fleet is not None:
                telemetry.watch_fleet(self.fleet)
        self._fleet_settings = settings
        return self.fleet

    def kaizala_client(self) -> KaizalaClient:
        """One Session per worker process: connections are reused across invocations."""
        if self._kaizala_client is None:
            with self._once:
                if self._kaizala_client is None:
                    self._kaizala_client = KaizalaClient()
        return self._kaizala_client

    def teams_verifier(self) -> "TeamsVerifier":
        """One verifier (and one cache of Entra's signing keys) per worker process."""
        if self._teams_verifier is None:
            with self._once:
                if self._teams_verifier is None:
                    from .providers.teams import TeamsVerifier  # noqa: PLC0415 - see _apply

                    self._teams_verifier = TeamsVerifier()
        return self._teams_verifier

    def close(self) -> None:
        """Close the fleet's connection; the next request configures everything again."""
        with self._lock:
            self._fleet_for(FleetSettings())
            self._settings = None

    def use_admission(self, admission: Admission) -> None:
        """Put another admission rule in front of every provider's calls (the bench's baseline uses this)."""
        with self._lock:
            self.admission = admission
            for cache in self.caches.values():
                cache.admission = admission
            self._settings = None  # re-applied (its limit too) on the next request

    def forget_signing_keys(self) -> None:
        """Start again without Entra's signing keys: the next Teams token fetches them (tests and the bench)."""
        self._teams_verifier = None

    def cache(self, provider: Provider) -> IdentityCache:
        return self.caches[provider]

    def clear(self) -> None:
        """Forget every cached identity, rejection and throttle. Tests call this between cases."""
        for cache in self.caches.values():
            cache.clear()
        self.admission.forget()

    # --- a request ---------------------------------------------------------------------------------------------

    def authenticate(
        self, req: func.HttpRequest, *, accept_body_token: bool = False, request: "telemetry.Invocation | None" = None
    ) -> Identity:
        """The caller's identity, or a typed ApiError saying why not. The checks run in the documented order.
        `request`: the guard's telemetry note, told which provider took the token and where its identity came from.
        No log line names the user (nor their name, phone, UPN or e-mail): outcome, source and time only."""
        request_token.refuse_token_in_query(req)
        settings = current_settings()
        self.configure(settings)
        from_body = request_token.body_token(req) if accept_body_token and req.method.upper() == "POST" else None
        token = request_token.require_token(request_token.header_token(req), from_body, providers=settings.providers)
        request_token.check_shape(token, max(cache.provider.max_token_length for cache in self._order))
        started = time.perf_counter()
        try:
            key = cache_key(token)
            cache = self._route(token, key)
            if request is not None:
                request.provider = cache.provider.name
            identity, source = cache.get(token, time.monotonic() + settings.timeout_seconds, key, request)
        except policy.Refused as early:  # refused before an identity was had (a Teams tenant or app not allowed)
            log.info("request forbidden (%s) after %.0f ms", early.reason, _ms_since(started))
            raise
        except ApiError as exc:
            log.info("token refused: %s after %.0f ms", exc.code, _ms_since(started))
            raise
        if source == "hit":
            log.debug("token accepted from cache")
        elif source == "fleet":
            log.info("token accepted from the fleet's cache (fleet) in %.0f ms", _ms_since(started))
        else:
            checker = "entra" if identity.provider == TEAMS else KAIZALA
            log.info("token checked with %s (%s) in %.0f ms", checker, source, _ms_since(started))
        refused = policy.refusal(identity, settings)
        if refused is not None:
            teams = identity.provider == TEAMS
            where = f"tenant {identity.tenant_id}" if teams else f"card {identity.action_package_id}"
            log.info("request forbidden (%s): %s", refused.reason, where)
            raise refused
        return identity

    def _route(self, token: str, key: str) -> IdentityCache:
        """Which provider's cache answers for `token`. A token a provider has already checked stays with it,
        unread; otherwise the first provider that claims it (what it says about itself grants nothing: the
        provider checks everything). One provider: it takes every token (its shape was checked already)."""
        order = self._order
        if len(order) == 1:
            return order[0]
        for cache in order:
            if cache.holds(key):
                return cache
        for cache in order:
            if cache.provider.claim(token):
                return cache
        raise AssertionError("the last provider claims every token")  # pragma: no cover


_root = Authenticator()


def root() -> Authenticator:
    """The process's one composition root."""
    return _root


def authenticate(
    req: func.HttpRequest, *, accept_body_token: bool = False, request: "telemetry.Invocation | None" = None
) -> Identity:
    return _root.authenticate(req, accept_body_token=accept_body_token, request=request)


def clear_cache() -> None:
    """Forget every cached identity and rejection. Tests call this between cases."""
    _root.clear()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
