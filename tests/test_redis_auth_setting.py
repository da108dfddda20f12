"""TOKEN_CACHE_REDIS_AUTH: url (the default) or entra, in any case; anything else, or entra with credentials in
TOKEN_CACHE_REDIS_URL, is a settings error naming what to fix."""

import pytest

from shared.errors import ServerMisconfigured
from shared.settings.redis_auth import check_redis_auth, redis_auth
from shared.settings.values import SettingsError


@pytest.mark.parametrize(
    ("raw", "auth"),
    [
        (None, "url"),
        ("", "url"),
        ("   ", "url"),
        ("url", "url"),
        ("URL", "url"),
        ("entra", "entra"),
        (" ENTRA ", "entra"),
    ],
)
def test_the_setting_is_url_or_entra(raw: str | None, auth: str) -> None:
    assert redis_auth(raw) == auth


@pytest.mark.parametrize("raw", ["entraid", "managed-identity", "key", "url,entra", "0"])
def test_any_other_value_is_a_settings_error_naming_the_setting_and_the_choices(raw: str) -> None:
    with pytest.raises(SettingsError) as error:
        redis_auth(raw)
    assert isinstance(error.value, ServerMisconfigured)  # the app answers 500 server_misconfigured
    assert error.value.setting == "TOKEN_CACHE_REDIS_AUTH"
    assert "url or entra" in error.value.detail
    assert raw not in error.value.problem  # a pasted access key would not reach the log


def test_a_value_that_is_an_access_key_is_not_echoed() -> None:
    key = "AbCdEf0123456789AbCdEf0123456789AbCdEf01234="
    with pytest.raises(SettingsError) as error:
        redis_auth(key)
    assert key not in error.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "rediss://:AbCdEf0123456789%3D@contoso.westeurope.redis.azure.net:10000/0",
        "rediss://default:key@contoso.westeurope.redis.azure.net:10000/0",
        "rediss://someone@contoso.westeurope.redis.azure.net:10000/0",
    ],
)
def test_entra_with_credentials_in_the_url_is_ambiguous(url: str) -> None:
    with pytest.raises(SettingsError) as error:
        check_redis_auth("entra", url)
    assert error.value.setting == "TOKEN_CACHE_REDIS_URL"
    assert "TOKEN_CACHE_REDIS_AUTH" in error.value.problem
    assert "AbCdEf" not in error.value.problem
    assert "key@" not in error.value.problem


@pytest.mark.parametrize(
    ("auth", "url"),
    [
        ("entra", "rediss://contoso.westeurope.redis.azure.net:10000/0"),
        ("entra", "redis://127.0.0.1:6379/0"),
        ("entra", None),  # the fleet cache is off
        ("url", "rediss://:key@contoso.westeurope.redis.azure.net:10000/0"),
        ("url", "redis://127.0.0.1:6379/0"),  # no key: Redis' default user, as before
    ],
)
def test_the_other_combinations_are_fine(auth: str, url: str | None) -> None:
    check_redis_auth(auth, url)  # type: ignore[arg-type]
