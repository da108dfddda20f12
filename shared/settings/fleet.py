"""The fleet cache's settings: where Redis is, the deployment's sealing secret, and the cache's timings."""

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .kaizala import TOKEN_LIFETIME_SECONDS
from .redis_auth import RedisAuth, check_redis_auth, redis_auth
from .values import SettingsError, is_loopback, number

MIN_REDIS_SECRET_CHARS = 32


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """The fleet cache on Redis; off when `redis_url` is None. The URL (access key) and secret stay out of repr."""

    redis_url: str | None = field(default=None, repr=False)
    redis_secret: bytes | None = field(default=None, repr=False)
    redis_timeout_ms: int = 100
    local_cache_seconds: int = 30
    redis_ca_file: str | None = None
    redis_auth: RedisAuth = "url"
    azure_client_id: str | None = None  # the user-assigned identity's client id, for redis_auth "entra"


def fleet_settings(values: dict[str, str | None]) -> FleetSettings:
    """Also used alone by `python -m shared.purge`, which needs no Kaizala setting."""
    url = redis_url(values.get("TOKEN_CACHE_REDIS_URL"))
    return FleetSettings(
        redis_url=url,
        redis_secret=redis_secret(values.get("TOKEN_CACHE_REDIS_SECRET"), required=url is not None),
        redis_timeout_ms=int(
            number(
                "TOKEN_CACHE_REDIS_TIMEOUT_MS",
                values.get("TOKEN_CACHE_REDIS_TIMEOUT_MS"),
                default=100,
                low=5,
                high=5000,
                whole=True,
            )
        ),
        redis_ca_file=redis_ca_file(values.get("TOKEN_CACHE_REDIS_CA_FILE"), tls=_tls(url)),
        redis_auth=_signed_in_by(values.get("TOKEN_CACHE_REDIS_AUTH"), url),
        azure_client_id=(values.get("AZURE_CLIENT_ID") or "").strip() or None,
        local_cache_seconds=int(
            number(
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
    if parts.scheme == "redis" and not is_loopback(parts.hostname):
        raise SettingsError("TOKEN_CACHE_REDIS_URL", "must use rediss:// (redis:// is allowed only for localhost)")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise SettingsError("TOKEN_CACHE_REDIS_URL", f"{shape} (the path is a database number)")
    del port  # parsed only to refuse a malformed one
    return url


def _signed_in_by(raw: str | None, url: str | None) -> RedisAuth:
    auth = redis_auth(raw)
    check_redis_auth(auth, url)
    return auth


def _tls(url: str | None) -> bool:
    return url is not None and url.startswith("rediss://")


def redis_ca_file(raw: str | None, *, tls: bool) -> str | None:
    """A private CA's certificates (PEM) to trust for Redis's TLS certificate; None: the system's CAs (Azure's
    public CAs need nothing). Checked now, so a wrong path is a settings error rather than a fleet tier that never
    connects."""
    path = (raw or "").strip()
    if not path:
        return None
    if not tls:
        raise SettingsError("TOKEN_CACHE_REDIS_CA_FILE", "is set but TOKEN_CACHE_REDIS_URL is not rediss:// (TLS)")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise SettingsError("TOKEN_CACHE_REDIS_CA_FILE", "names no readable file (a PEM file of CA certificates)")
    with open(path, "rb") as file:
        if b"-----BEGIN CERTIFICATE-----" not in file.read():
            raise SettingsError("TOKEN_CACHE_REDIS_CA_FILE", "holds no PEM certificate")
    return path


KEY_VAULT_REFERENCE = "@microsoft.keyvault("


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
    if value.lower().startswith(KEY_VAULT_REFERENCE):
        # Azure passes an unresolved Key Vault reference through as its own text, which anyone can read in the
        # deployment's template: sealing with it would be sealing with a published secret.
        raise SettingsError(
            "TOKEN_CACHE_REDIS_SECRET",
            "is an unresolved Key Vault reference: give the app's identity access to the secret (Key Vault Secrets "
            "User) and check the reference's status in the portal",
        )
    if len(value) < MIN_REDIS_SECRET_CHARS or not value.isascii():
        raise SettingsError(
            "TOKEN_CACHE_REDIS_SECRET", f"must be at least {MIN_REDIS_SECRET_CHARS} ASCII characters (got fewer)"
        )
    return value.encode()
