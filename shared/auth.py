"""Authentication for a function: who is calling, checked in the documented order, and a one-line guard.

@protected
def main(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    return json_response({"hello": identity.name})
"""

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, overload

import azure.functions as func

from . import policy, tokens
from .cache import CallSlots, Fetch, IdentityCache, cache_key
from .errors import ApiError, InternalError
from .identity import TEAMS, Identity
from .responses import error_response
from .settings import FleetSettings, OneSnapshotPerRequest, Settings, SettingsError, current_settings

if TYPE_CHECKING:
    from .fleet import FleetCache
    from .kaizala import KaizalaClient
    from .teams import TeamsVerifier

log = logging.getLogger("kaizala_auth")

_calls = CallSlots()  # one KAIZALA_MAX_CONCURRENT_CALLS for both providers' calls
cache = IdentityCache(slots=_calls)  # identities Kaizala vouched for
teams_cache = IdentityCache(provider=TEAMS, slots=_calls)  # identities Entra ID signed for a Teams tab (issue 11)

Handler = Callable[[func.HttpRequest, Identity], func.HttpResponse]
Main = Callable[[func.HttpRequest], func.HttpResponse]


def clear_cache() -> None:
    """Forget every cached identity and rejection. Tests call this between cases."""
    cache.clear()
    teams_cache.clear()


def authenticate(req: func.HttpRequest, *, accept_body_token: bool = False) -> Identity:
    """The caller's identity, or a typed ApiError saying why not. The checks run in the documented order."""
    tokens.refuse_token_in_query(req)
    settings = current_settings()
    from_body = tokens.body_token(req) if accept_body_token and req.method.upper() == "POST" else None
    token = tokens.require_token(tokens.header_token(req), from_body, teams=settings.teams is not None)
    tokens.check_shape(token, tokens.MAX_TOKEN_LENGTH if settings.teams is None else tokens.MAX_ENTRA_TOKEN_LENGTH)

    started = time.perf_counter()
    try:
        key = cache_key(token)
        checked_by, fetch, renew = _provider_for(token, key, settings)
        checked_by.resize(settings.cache_max_entries)
        checked_by.share(_fleet(settings.fleet), settings.fleet.local_cache_seconds)
        identity, source = checked_by.get(
            token,
            fetch,
            seconds=settings.cache_seconds,
            timeout=settings.timeout_seconds,
            max_calls=settings.max_concurrent_calls,
            not_after=lambda: tokens.expiry(token, renew=renew),
            refresh_ahead=settings.refresh_ahead,
            admit=lambda checked: policy.allows(checked, settings),
            key=key,
        )
    except policy.Refused as early:  # refused before an identity was had (a Teams tenant or app not allowed)
        log.info("request forbidden (%s) after %.0f ms", early.reason, _ms_since(started))
        raise
    except ApiError as exc:
        log.info("token refused: %s after %.0f ms", exc.code, _ms_since(started))
        raise
    if source == "hit":
        log.debug("token accepted from cache: user %s", identity.id)
    elif source == "fleet":
        log.info("token accepted from the fleet's cache (fleet): user %s", identity.id)
    else:
        checker = "entra" if identity.provider == TEAMS else "kaizala"
        log.info("token checked with %s (%s): user %s in %.0f ms", checker, source, identity.id, _ms_since(started))
    refused = policy.refusal(identity, settings)
    if refused is not None:
        where = f"tenant {identity.tenant_id}" if identity.provider == TEAMS else f"card {identity.action_package_id}"
        log.info("request forbidden (%s): user %s, %s", refused.reason, identity.id, where)
        raise refused
    return identity


def _provider_for(token: str, key: str, settings: Settings) -> tuple[IdentityCache, Fetch, str]:
    """Which provider checks `token`: its cache, the check itself, and how a caller gets a new token. What the
    token says about itself picks the provider and grants nothing: the provider checks everything. A token one
    provider has already checked stays with it, unread (the policy still runs on every request)."""
    kaizala = cache, lambda deadline: _kaizala().fetch_identity(token, settings.identity_url, deadline), tokens.RENEW
    teams_settings = settings.teams
    if teams_settings is None or cache.holds(key):
        return kaizala
    from . import teams  # noqa: PLC0415 - PyJWT and the key client load only when Teams is configured

    def verify(deadline: float) -> Identity:
        return _teams().verify(token, teams_settings, deadline)

    if teams_cache.holds(key):
        return teams_cache, verify, teams.RENEW
    issuer = teams.entra_issuer(token)
    if issuer is None:
        tokens.check_shape(token)  # Kaizala's own limit: only Entra's tokens may be longer
        return kaizala
    teams.allowed_tenant(issuer, teams_settings)  # a tenant we never trust: 403 before any key fetch
    return teams_cache, verify, teams.RENEW


@overload
def protected(handler: Handler, *, accept_body_token: bool = False) -> Main: ...
@overload
def protected(handler: None = None, *, accept_body_token: bool = False) -> Callable[[Handler], Main]: ...
def protected(handler: Handler | None = None, *, accept_body_token: bool = False) -> Main | Callable[[Handler], Main]:
    """Guard a function: `handler(req, identity)` runs only for an authenticated, allowed caller.

    Every ApiError becomes its documented JSON answer, and anything unexpected a logged `internal_error`.
    """

    def decorate(handler: Handler) -> Main:
        # No __wrapped__: the Functions worker reads main's signature and must see only `req`.
        @functools.wraps(handler, updated=())
        def main(req: func.HttpRequest) -> func.HttpResponse:
            try:
                with OneSnapshotPerRequest():
                    identity = authenticate(req, accept_body_token=accept_body_token)
                    return handler(req, identity)
            except SettingsError as exc:
                log.error("server misconfigured: %s (fix this app setting)", exc.detail)
                return error_response(exc)
            except ApiError as exc:
                log.debug("request answered %d %s", exc.status, exc.code)
                return error_response(exc)
            except Exception:
                log.exception("unhandled error in %s", handler.__module__)
                return error_response(InternalError())

        del main.__wrapped__
        return main

    return decorate(handler) if handler is not None else decorate


_once = threading.Lock()  # makes each of the per-process clients below exactly once
_kaizala_client: "KaizalaClient | None" = None


def _kaizala() -> "KaizalaClient":
    """One Session per worker process (connections are reused across invocations), made on the first upstream
    call: loading the functions and answering requests that never reach Kaizala do not import requests."""
    global _kaizala_client  # noqa: PLW0603
    if _kaizala_client is None:
        with _once:
            if _kaizala_client is None:
                from .kaizala import KaizalaClient  # noqa: PLC0415 - see above

                _kaizala_client = KaizalaClient()
    return _kaizala_client


_teams_verifier: "TeamsVerifier | None" = None


def _teams() -> "TeamsVerifier":
    """One verifier (and one cache of Entra's signing keys) per worker process, made on the first Teams token."""
    global _teams_verifier  # noqa: PLW0603
    if _teams_verifier is None:
        with _once:
            if _teams_verifier is None:
                from .teams import TeamsVerifier  # noqa: PLC0415 - see _provider_for

                _teams_verifier = TeamsVerifier()
    return _teams_verifier


_fleet_in_use: "tuple[FleetSettings, FleetCache | None]" = (FleetSettings(), None)


def _fleet(settings: FleetSettings) -> "FleetCache | None":
    """The process's one connection to the fleet's Redis, for the settings in force (None: Redis off). A change
    of settings closes the old one. shared.fleet (redis-py, cryptography) is imported only when Redis is on."""
    global _fleet_in_use  # noqa: PLW0603 - one per worker process, like the Kaizala session
    in_use_settings, in_use = _fleet_in_use
    if settings == in_use_settings:
        return in_use
    with _once:
        in_use_settings, in_use = _fleet_in_use
        if settings != in_use_settings:
            if in_use is not None:
                in_use.close()
            in_use = None
            if settings.redis_url is not None:
                from .fleet import FleetCache  # noqa: PLC0415 - keeps redis-py off the cold start without Redis

                in_use = FleetCache.from_settings(settings)
                log.info("token cache shared through Redis at %s", in_use.where if in_use else "?")
            _fleet_in_use = (settings, in_use)
        return in_use


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
