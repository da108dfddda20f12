"""TOKEN_CACHE_REDIS_AUTH: how the fleet cache signs in to Redis.

- `url` (the default, also when unset or blank): with the credentials TOKEN_CACHE_REDIS_URL carries (an access key).
- `entra`: with the app's managed identity, through Microsoft Entra ID (shared/fleet/entra.py): the URL then carries
  no password; AZURE_CLIENT_ID picks a user-assigned identity.
"""

from typing import Literal, get_args
from urllib.parse import urlsplit

from .values import SettingsError

RedisAuth = Literal["url", "entra"]
SETTING = "TOKEN_CACHE_REDIS_AUTH"
CHOICES: tuple[RedisAuth, ...] = get_args(RedisAuth)


def redis_auth(raw: str | None) -> RedisAuth:
    """`url` or `entra`, in any case; unset or blank is `url`. Anything else is a SettingsError."""
    value = (raw or "").strip().lower()
    if not value:
        return "url"
    for choice in CHOICES:
        if value == choice:
            return choice
    # The value is not echoed: a misplaced access key pasted here must not reach the log.
    raise SettingsError(SETTING, f"must be {' or '.join(CHOICES)} (url: the credentials in TOKEN_CACHE_REDIS_URL)")


def check_redis_auth(auth: RedisAuth, url: str | None) -> None:
    """With `entra`, TOKEN_CACHE_REDIS_URL must carry no credentials: with a password (an access key) which of the
    two signs in would be ambiguous, and redis-py refuses a user name or password beside a credential provider (the
    identity's object id is the user). `url` needs nothing: a URL without credentials signs in as Redis' default
    user, as before."""
    if auth != "entra" or url is None:
        return
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return  # malformed: redis_url names that problem
    if username or password:
        raise SettingsError(
            "TOKEN_CACHE_REDIS_URL",
            f"carries credentials (an access key) but {SETTING} is entra, which signs in with the app's managed "
            "identity: remove them from the URL (rediss://<host>:10000/0), or set "
            f"{SETTING}=url to keep using the key",
        )
