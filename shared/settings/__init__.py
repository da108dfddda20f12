"""Every app setting, parsed and checked in this one package.

Settings are read from the environment on each call, so a test (or an operator changing app settings) takes
effect without re-importing anything; parsing only happens when the raw values change. The parts: `values` (the
small parsers, and SettingsError), `kaizala` (cards, users/me, limits), `fleet` (the fleet cache on Redis) and
`teams` (Teams tabs, Entra ID single sign-on).
"""

import functools
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from ..identity import KAIZALA, TEAMS, Provider, comparable_id
from .fleet import FleetSettings, fleet_settings, redis_secret, redis_url
from .kaizala import (
    ANY_ACTION_PACKAGE,
    DEFAULT_IDENTITY_URL,
    TOKEN_LIFETIME_SECONDS,
    card_list,
    default_max_concurrent_calls,
    identity_url,
)
from .providers import auth_providers
from .teams import DEFAULT_TEAMS_AUTHORITY, TEAMS_CLIENT_APP_IDS, TEAMS_PREFIX, TeamsSettings, teams_settings
from .values import SettingsError, flag, number, optional_list

__all__ = [
    "Settings",
    "OneSnapshotPerRequest",
    "current_settings",
    "SETTING_NAMES",
    "WORKER_POOL_SETTING",
    "SettingsError",
    "BUNDLED_PRODUCTS_FILE",
    "ANY_ACTION_PACKAGE",
    "DEFAULT_IDENTITY_URL",
    "TOKEN_LIFETIME_SECONDS",
    "default_max_concurrent_calls",
    "FleetSettings",
    "fleet_settings",
    "redis_secret",
    "redis_url",
    "DEFAULT_TEAMS_AUTHORITY",
    "TEAMS_CLIENT_APP_IDS",
    "TeamsSettings",
    "teams_settings",
]

BUNDLED_PRODUCTS_FILE = Path(__file__).parent.with_name("products.json")

log = logging.getLogger("kaizala_auth")

SETTING_NAMES = (
    # which tokens count
    "AUTH_PROVIDERS",
    # Kaizala, the in-process cache, the catalog
    "KAIZALA_IDENTITY_URL",
    "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS",
    "KAIZALA_ALLOWED_USER_IDS",
    "KAIZALA_BLOCKED_USER_IDS",
    "KAIZALA_TIMEOUT_SECONDS",
    "KAIZALA_MAX_CONCURRENT_CALLS",
    "TOKEN_CACHE_SECONDS",
    "TOKEN_CACHE_MAX_ENTRIES",
    "TOKEN_REFRESH_AHEAD",
    "PRODUCTS_FILE",
    # the fleet cache on Redis
    "TOKEN_CACHE_REDIS_URL",
    "TOKEN_CACHE_REDIS_SECRET",
    "TOKEN_CACHE_REDIS_TIMEOUT_MS",
    "TOKEN_CACHE_REDIS_CA_FILE",
    "TOKEN_CACHE_REDIS_AUTH",
    "TOKEN_CACHE_LOCAL_SECONDS",
    "AZURE_CLIENT_ID",  # with TOKEN_CACHE_REDIS_AUTH=entra: the user-assigned identity that signs in
    # Microsoft Teams tabs (Entra ID single sign-on)
    "TEAMS_CLIENT_ID",
    "TEAMS_APPLICATION_ID_URI",
    "TEAMS_ALLOWED_TENANT_IDS",
    "TEAMS_ALLOWED_CLIENT_APP_IDS",
    "TEAMS_AUTHORITY",
    "TEAMS_ALLOWED_USER_IDS",
    "TEAMS_BLOCKED_USER_IDS",
)
# Not ours, but it sizes a default: the Python worker's thread pool for sync functions.
WORKER_POOL_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"


@dataclass(frozen=True, slots=True)
class Settings:
    providers: tuple[Provider, ...]  # AUTH_PROVIDERS, in the order a token is offered to them
    identity_url: str
    allowed_action_package_ids: frozenset[str]
    allowed_user_ids: frozenset[str]
    blocked_user_ids: frozenset[str]  # as identity.comparable_id forms them
    timeout_seconds: float  # the whole validation: connects, retries, headers and body
    max_concurrent_calls: int
    cache_seconds: int
    cache_max_entries: int
    refresh_ahead: bool
    products_file: Path
    fleet: FleetSettings = field(default_factory=FleetSettings)
    teams: TeamsSettings | None = None  # None: Teams is off

    @property
    def kaizala_on(self) -> bool:
        return KAIZALA in self.providers


class OneSnapshotPerRequest:
    """`with OneSnapshotPerRequest():` the first `current_settings()` inside is the one every later call returns.

    One request then sees one set of settings, and the environment is read once per request rather than once per
    module that needs a setting.
    """

    __slots__ = ("_token", "settings")

    def __init__(self) -> None:
        self.settings: Settings | None = None

    def __enter__(self) -> None:
        self._token = _request.set(self)

    def __exit__(self, *_exc: object) -> None:
        _request.reset(self._token)


_request: ContextVar[OneSnapshotPerRequest | None] = ContextVar("settings_request", default=None)


def current_settings() -> Settings:
    """The settings in force now; raises SettingsError when one is missing or malformed (fail closed)."""
    request = _request.get()
    if request is not None and request.settings is not None:
        return request.settings
    settings = _parse(_environment())
    if request is not None:
        request.settings = settings
    return settings


_NAMES = (*SETTING_NAMES, WORKER_POOL_SETTING)
_ENCODED_NAMES = tuple(os.environ.encodekey(name) for name in _NAMES)


def _environment() -> tuple[object, ...]:
    """The raw values of every setting, as cheaply as they can be read (this runs on every request): straight from
    the environment's own mapping, undecoded (os.environ keeps it in step with putenv); `_parse` decodes them."""
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return tuple(os.environ.get(name) for name in _NAMES)
    return tuple(map(data.get, _ENCODED_NAMES))


def _decoded(raw: object) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return str(os.environ.decodevalue(raw))  # type: ignore[arg-type]  # bytes, from the mapping itself


@functools.lru_cache(maxsize=8)
def _parse(raw: tuple[object, ...]) -> Settings:
    values = dict(zip(_NAMES, map(_decoded, raw), strict=True))
    providers = auth_providers(values["AUTH_PROVIDERS"])
    kaizala_on = KAIZALA in providers
    _warn_unused(values, providers)
    return Settings(
        providers=providers,
        identity_url=identity_url(values["KAIZALA_IDENTITY_URL"]) if kaizala_on else DEFAULT_IDENTITY_URL,
        allowed_action_package_ids=card_list(values["KAIZALA_ALLOWED_ACTION_PACKAGE_IDS"])
        if kaizala_on
        else frozenset(),
        allowed_user_ids=optional_list("KAIZALA_ALLOWED_USER_IDS", values["KAIZALA_ALLOWED_USER_IDS"]),
        blocked_user_ids=frozenset(
            comparable_id(user_id)
            for user_id in optional_list("KAIZALA_BLOCKED_USER_IDS", values["KAIZALA_BLOCKED_USER_IDS"])
        ),
        timeout_seconds=number(
            "KAIZALA_TIMEOUT_SECONDS", values["KAIZALA_TIMEOUT_SECONDS"], default=5.0, low=0.05, high=60.0
        ),
        max_concurrent_calls=int(
            number(
                "KAIZALA_MAX_CONCURRENT_CALLS",
                values["KAIZALA_MAX_CONCURRENT_CALLS"],
                default=default_max_concurrent_calls(values[WORKER_POOL_SETTING]),
                low=1,
                high=1000,
                whole=True,
            )
        ),
        cache_seconds=min(
            int(number("TOKEN_CACHE_SECONDS", values["TOKEN_CACHE_SECONDS"], default=300, low=0, whole=True)),
            TOKEN_LIFETIME_SECONDS,
        ),
        cache_max_entries=int(
            number(
                "TOKEN_CACHE_MAX_ENTRIES",
                values["TOKEN_CACHE_MAX_ENTRIES"],
                default=10_000,
                low=1,
                high=10_000_000,
                whole=True,
            )
        ),
        refresh_ahead=flag("TOKEN_REFRESH_AHEAD", values["TOKEN_REFRESH_AHEAD"], default=True),
        products_file=Path(values["PRODUCTS_FILE"].strip())
        if values["PRODUCTS_FILE"] and values["PRODUCTS_FILE"].strip()
        else BUNDLED_PRODUCTS_FILE,
        fleet=fleet_settings(values),
        teams=_teams(values) if TEAMS in providers else None,
    )


def _teams(values: dict[str, str | None]) -> TeamsSettings:
    teams = teams_settings(values)
    if teams is None:
        raise SettingsError(
            "TEAMS_CLIENT_ID", "is not set, but AUTH_PROVIDERS names teams: set the app registration's client id"
        )
    return teams


# Settings that only a provider reads: set while it is off, they do nothing, which an operator should hear about.
_KAIZALA_ONLY = (
    "KAIZALA_IDENTITY_URL",
    "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS",
    "KAIZALA_ALLOWED_USER_IDS",
    "KAIZALA_BLOCKED_USER_IDS",
)


def _warn_unused(values: dict[str, str | None], providers: tuple[Provider, ...]) -> None:
    """One WARNING per distinct environment (parsing is cached) naming the settings of a provider that is off."""
    off = [
        name
        for name, raw in values.items()
        if (raw or "").strip()
        and (
            (TEAMS not in providers and name.startswith(TEAMS_PREFIX))
            or (KAIZALA not in providers and name in _KAIZALA_ONLY)
        )
    ]
    if off:
        log.warning(
            "settings ignored: %s (AUTH_PROVIDERS=%s does not name their provider)", ", ".join(off), ",".join(providers)
        )
