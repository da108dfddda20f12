"""Every app setting, parsed and checked in one place.

Settings are read from the environment on each call, so a test (or an operator changing app settings) takes
effect without re-importing anything; parsing only happens when the raw values change.
"""

import functools
import ipaddress
import math
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ServerMisconfigured

DEFAULT_IDENTITY_URL = "https://kms1.kaiza.la/v1/users/me"
BUNDLED_PRODUCTS_FILE = Path(__file__).with_name("products.json")
TOKEN_LIFETIME_SECONDS = 1800  # Kaizala's Integration Service tokens live 30 minutes.
ANY_ACTION_PACKAGE = "*"

SETTING_NAMES = (
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
    # issue 9 (the fleet cache on Redis)
    "TOKEN_CACHE_REDIS_URL",
    "TOKEN_CACHE_REDIS_SECRET",
    "TOKEN_CACHE_REDIS_TIMEOUT_MS",
    "TOKEN_CACHE_LOCAL_SECONDS",
    # issue 11 (Microsoft Teams tabs, Entra ID SSO)
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


class SettingsError(ServerMisconfigured):
    """A setting is missing or malformed. The caller sees only `server_misconfigured`; the log line names the
    setting and the problem, so the operator knows what to fix."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__()
        self.setting = setting
        self.problem = problem

    @property
    def detail(self) -> str:
        return f"{self.setting} {self.problem}"


@dataclass(frozen=True, slots=True)
class Settings:
    identity_url: str
    allowed_action_package_ids: frozenset[str]
    allowed_user_ids: frozenset[str]
    blocked_user_ids: frozenset[str]
    timeout_seconds: float  # the whole validation: connects, retries, headers and body
    max_concurrent_calls: int
    cache_seconds: int
    cache_max_entries: int
    refresh_ahead: bool
    products_file: Path
    fleet: "FleetSettings" = field(default_factory=lambda: FleetSettings())  # noqa: PLW0108 - issue 9 block below
    teams: "TeamsSettings | None" = None  # None: Teams is off and every token goes to Kaizala (issue 11 block below)


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
    settings = _parse(tuple(os.environ.get(name) for name in (*SETTING_NAMES, WORKER_POOL_SETTING)))
    if request is not None:
        request.settings = settings
    return settings


@functools.lru_cache(maxsize=8)
def _parse(raw: tuple[str | None, ...]) -> Settings:
    values = dict(zip((*SETTING_NAMES, WORKER_POOL_SETTING), raw, strict=True))
    return Settings(
        identity_url=_identity_url(values["KAIZALA_IDENTITY_URL"]),
        allowed_action_package_ids=_card_list(values["KAIZALA_ALLOWED_ACTION_PACKAGE_IDS"]),
        allowed_user_ids=_optional_list("KAIZALA_ALLOWED_USER_IDS", values["KAIZALA_ALLOWED_USER_IDS"]),
        blocked_user_ids=_optional_list("KAIZALA_BLOCKED_USER_IDS", values["KAIZALA_BLOCKED_USER_IDS"]),
        timeout_seconds=_number(
            "KAIZALA_TIMEOUT_SECONDS", values["KAIZALA_TIMEOUT_SECONDS"], default=5.0, low=0.05, high=60.0
        ),
        max_concurrent_calls=int(
            _number(
                "KAIZALA_MAX_CONCURRENT_CALLS",
                values["KAIZALA_MAX_CONCURRENT_CALLS"],
                default=default_max_concurrent_calls(values[WORKER_POOL_SETTING]),
                low=1,
                high=1000,
                whole=True,
            )
        ),
        cache_seconds=min(
            int(_number("TOKEN_CACHE_SECONDS", values["TOKEN_CACHE_SECONDS"], default=300, low=0, whole=True)),
            TOKEN_LIFETIME_SECONDS,
        ),
        cache_max_entries=int(
            _number(
                "TOKEN_CACHE_MAX_ENTRIES",
                values["TOKEN_CACHE_MAX_ENTRIES"],
                default=10_000,
                low=1,
                high=10_000_000,
                whole=True,
            )
        ),
        refresh_ahead=_flag("TOKEN_REFRESH_AHEAD", values["TOKEN_REFRESH_AHEAD"], default=True),
        products_file=Path(values["PRODUCTS_FILE"].strip())
        if values["PRODUCTS_FILE"] and values["PRODUCTS_FILE"].strip()
        else BUNDLED_PRODUCTS_FILE,
        fleet=fleet_settings(values),
        teams=teams_settings(values),
    )


def _identity_url(raw: str | None) -> str:
    # The token travels in a header to this URL.
    return _https_url("KAIZALA_IDENTITY_URL", raw, DEFAULT_IDENTITY_URL)


def _https_url(name: str, raw: str | None, default: str) -> str:
    """An absolute https URL (`default` when empty). What it names decides which tokens count, so plain http only
    to a stand-in on this machine, and no query, fragment or credentials."""
    url = (raw or "").strip() or default
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed only to refuse a malformed or out-of-range port
    except ValueError:
        raise SettingsError(name, "must be an absolute https URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(name, "must be an absolute https URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError(name, "must use https (http is allowed only for localhost)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError(name, "must not carry a query, fragment or credentials")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(raw: str | None) -> frozenset[str]:
    return frozenset(item.strip() for item in (raw or "").split(",") if item.strip())


def _card_list(raw: str | None) -> frozenset[str]:
    name = "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS"
    items = _split(raw)
    if not items:
        raise SettingsError(
            name, f"is not set: set it to your card's action package id (comma-separated, or {ANY_ACTION_PACKAGE})"
        )
    if ANY_ACTION_PACKAGE in items and len(items) > 1:
        raise SettingsError(name, f"mixes {ANY_ACTION_PACKAGE} with ids: set either {ANY_ACTION_PACKAGE} alone or ids")
    return items


def _optional_list(name: str, raw: str | None) -> frozenset[str]:
    """Unset or blank means "no restriction"; set to something that holds no id (`,`) is a mistake, not "anyone"."""
    if raw is None or not raw.strip():
        return frozenset()
    items = _split(raw)
    if not items:
        raise SettingsError(name, f"is set to {raw!r}, which holds no id: list ids, or leave it empty")
    return items


def default_max_concurrent_calls(worker_pool: str | None) -> int:
    """Half the worker's thread pool (at least 2), so calls to a hanging Kaizala never hold every thread and
    cached users keep being answered. The pool is PYTHON_THREADPOOL_THREAD_COUNT, else the worker's own default
    for Python 3.9+ (that of ThreadPoolExecutor: min(32, CPUs + 4))."""
    pool = min(32, (os.cpu_count() or 1) + 4)
    value = (worker_pool or "").strip()
    if value.isascii() and value.isdecimal() and 0 < int(value) <= 10_000:
        pool = int(value)
    return max(2, pool // 2)


def _number(
    name: str,
    raw: str | None,
    *,
    default: float,
    low: float,
    high: float | None = None,
    whole: bool = False,
) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise SettingsError(name, f"must be {kind}, got {raw!r}") from None
    if math.isnan(value) or value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise SettingsError(name, f"must be {bound}, got {raw!r}")
    return value


def _flag(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"must be 1 or 0, got {raw!r}")


# --- issue 9: the fleet cache on Redis -------------------------------------------------------------------------
MIN_REDIS_SECRET_CHARS = 32


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """The fleet cache on Redis; off when `redis_url` is None. The URL (access key) and secret stay out of repr."""

    redis_url: str | None = field(default=None, repr=False)
    redis_secret: bytes | None = field(default=None, repr=False)
    redis_timeout_ms: int = 100
    local_cache_seconds: int = 30


def fleet_settings(values: dict[str, str | None]) -> FleetSettings:
    """Also used alone by `python -m shared.purge`, which needs no Kaizala setting."""
    url = redis_url(values.get("TOKEN_CACHE_REDIS_URL"))
    return FleetSettings(
        redis_url=url,
        redis_secret=redis_secret(values.get("TOKEN_CACHE_REDIS_SECRET"), required=url is not None),
        redis_timeout_ms=int(
            _number(
                "TOKEN_CACHE_REDIS_TIMEOUT_MS",
                values.get("TOKEN_CACHE_REDIS_TIMEOUT_MS"),
                default=100,
                low=5,
                high=5000,
                whole=True,
            )
        ),
        local_cache_seconds=int(
            _number(
                "TOKEN_CACHE_LOCAL_SECONDS",
                values.get("TOKEN_CACHE_LOCAL_SECONDS"),
                default=30,
                low=0,
                high=TOKEN_LIFETIME_SECONDS,
                whole=True,
            )
        ),
    )


def redis_url(raw: str | None) -> str | None:
    """None (off) when empty. Problems are named without echoing the value: it holds the access key."""
    url = (raw or "").strip()
    if not url:
        return None
    shape = "must look like rediss://:<URL-encoded access key>@<host>:6380/0"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError("TOKEN_CACHE_REDIS_URL", shape) from None
    if parts.scheme not in ("rediss", "redis") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError("TOKEN_CACHE_REDIS_URL", shape)
    # Identities and the access key cross this connection: plain redis:// only to a server on this machine.
    if parts.scheme == "redis" and not _is_loopback(parts.hostname):
        raise SettingsError("TOKEN_CACHE_REDIS_URL", "must use rediss:// (redis:// is allowed only for localhost)")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise SettingsError("TOKEN_CACHE_REDIS_URL", f"{shape} (the path is a database number)")
    del port  # parsed only to refuse a malformed one
    return url


def redis_secret(raw: str | None, *, required: bool) -> bytes | None:
    """The deployment's sealing secret: without it, anyone able to write to Redis could seal a made-up identity
    under a made-up token, and anyone able to read it could test guessed user ids against the purge index."""
    value = (raw or "").strip()
    if not value:
        if required:
            raise SettingsError(
                "TOKEN_CACHE_REDIS_SECRET",
                "is not set: TOKEN_CACHE_REDIS_URL needs it (a random string of at least "
                f"{MIN_REDIS_SECRET_CHARS} characters, e.g. `openssl rand -base64 32`, the same on every instance)",
            )
        return None
    if len(value) < MIN_REDIS_SECRET_CHARS or not value.isascii():
        raise SettingsError(
            "TOKEN_CACHE_REDIS_SECRET", f"must be at least {MIN_REDIS_SECRET_CHARS} ASCII characters (got fewer)"
        )
    return value.encode()


# --- issue 11: Microsoft Teams tabs (Entra ID single sign-on) ---------------------------------------------------
DEFAULT_TEAMS_AUTHORITY = "https://login.microsoftonline.com"
# The Microsoft Teams clients that request a tab's token (Microsoft's tab SSO documentation): desktop and mobile,
# and web. A tab extended to Microsoft 365 or Outlook adds their ids (the README lists them).
TEAMS_CLIENT_APP_IDS = frozenset({"1fec8e78-bce4-4aaf-ab1b-5451cc387264", "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"})
_TEAMS_NAMES = tuple(name for name in SETTING_NAMES if name.startswith("TEAMS_"))
_APPLICATION_ID_URI = re.compile(r"api://[^/\s]+/(?P<client_id>[^/\s]+)")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class TeamsSettings:
    """Who may sign in from a Teams tab: tokens for `client_id`, from these tenants, requested by these apps."""

    client_id: str
    application_id_uri: str | None  # api://<host>/<client id>, the `aud` of the registration's v1 tokens
    allowed_tenant_ids: frozenset[str]
    allowed_client_app_ids: frozenset[str]
    authority: str  # where signing keys are fetched from; tokens always carry Microsoft's own issuer strings
    allowed_user_ids: frozenset[str]
    blocked_user_ids: frozenset[str]

    def keys_url(self, tenant_id: str) -> str:
        return f"{self.authority}/{tenant_id}/discovery/v2.0/keys"

    def accepts_audience(self, audience: str) -> bool:
        """A token for this API names the client id (v2 tokens) or the Application ID URI (v1 tokens) as `aud`.
        The URI is compared whole: another app in the tenant may register `api://<tenant id>/<our client id>`."""
        return audience.lower() in (self.client_id, f"api://{self.client_id}") or audience == self.application_id_uri


def teams_settings(values: dict[str, str | None]) -> TeamsSettings | None:
    """None (Teams off) when no TEAMS_ setting is set. Set any, and the client id and the tenants are required:
    a half-configured Teams sign-in fails closed rather than guessing."""
    if not any((values.get(name) or "").strip() for name in _TEAMS_NAMES):
        return None
    client_id = (values.get("TEAMS_CLIENT_ID") or "").strip().lower()
    if not client_id:
        raise SettingsError(
            "TEAMS_CLIENT_ID", "is not set, but other TEAMS_ settings are: set the app registration's client id"
        )
    if not _GUID.fullmatch(client_id):
        raise SettingsError("TEAMS_CLIENT_ID", "must be the app registration's client id (a GUID)")
    tenants = _guids("TEAMS_ALLOWED_TENANT_IDS", values.get("TEAMS_ALLOWED_TENANT_IDS"), required=True)
    client_apps = _guids("TEAMS_ALLOWED_CLIENT_APP_IDS", values.get("TEAMS_ALLOWED_CLIENT_APP_IDS"), required=False)
    return TeamsSettings(
        client_id=client_id,
        application_id_uri=_application_id_uri(values.get("TEAMS_APPLICATION_ID_URI"), client_id),
        allowed_tenant_ids=tenants,
        allowed_client_app_ids=client_apps or TEAMS_CLIENT_APP_IDS,
        authority=_authority(values.get("TEAMS_AUTHORITY")),
        allowed_user_ids=_guids("TEAMS_ALLOWED_USER_IDS", values.get("TEAMS_ALLOWED_USER_IDS"), required=False),
        blocked_user_ids=_guids("TEAMS_BLOCKED_USER_IDS", values.get("TEAMS_BLOCKED_USER_IDS"), required=False),
    )


def _application_id_uri(raw: str | None, client_id: str) -> str | None:
    uri = (raw or "").strip()
    if not uri:
        return None
    match = _APPLICATION_ID_URI.fullmatch(uri)
    if match is None or match.group("client_id").lower() != client_id:
        raise SettingsError(
            "TEAMS_APPLICATION_ID_URI", "must be api://<the tab's host>/<TEAMS_CLIENT_ID> (Expose an API, in Entra ID)"
        )
    return uri


def _guids(name: str, raw: str | None, *, required: bool) -> frozenset[str]:
    """Entra ids are GUIDs: anything else (`*`, `common`, `organizations`, a typo) is refused, never widened."""
    if required and not (raw or "").strip():
        raise SettingsError(name, 'is not set: list the allowed ids, comma-separated (there is no "any" value)')
    items = frozenset(item.lower() for item in _optional_list(name, raw))
    if not all(_GUID.fullmatch(item) for item in items):
        raise SettingsError(name, 'must list GUIDs only, comma-separated (there is no "any" value)')
    return items


def _authority(raw: str | None) -> str:
    # Signing keys decide which tokens are genuine.
    return _https_url("TEAMS_AUTHORITY", (raw or "").strip().rstrip("/"), DEFAULT_TEAMS_AUTHORITY)
