"""The fleet cache's settings: off by default, TLS unless loopback, a malformed value names the setting
(never echoing the URL: it holds the access key)."""

import pytest

from shared.settings import SettingsError, current_settings
from tests.helpers import secret

SECRET = "s" * 32
AZURE_URL = "rediss://:{key}@contoso-cache.redis.cache.windows.net:6380/0"


def test_defaults_keep_redis_off(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = current_settings().fleet
    assert fleet.redis_url is None
    assert fleet.redis_secret is None
    assert fleet.redis_timeout_ms == 100
    assert fleet.local_cache_seconds == 30


def test_an_unresolved_key_vault_reference_is_not_taken_as_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure hands the app the reference's own text when it cannot resolve it: over 32 characters, and public."""
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
    reference = "@Microsoft.KeyVault(VaultName=kv-contoso;SecretName=token-cache-redis-secret)"
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", reference)
    with pytest.raises(SettingsError) as caught:
        current_settings()
    assert caught.value.setting == "TOKEN_CACHE_REDIS_SECRET"
    assert "Key Vault reference" in caught.value.problem


@pytest.mark.parametrize(
    "url",
    [
        AZURE_URL,
        "rediss://cache.example.net:6380",
        "redis://127.0.0.1:6379/0",
        "redis://localhost:6379",
        "redis://[::1]:6379/2",
        "rediss://user:pass%2Fword%3D@cache.example.net:6380/15",
    ],
)
def test_accepted_urls(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", url.format(key=secret("an-access-key%2B%3D")))
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", SECRET)
    fleet = current_settings().fleet
    assert fleet.redis_url == url.format(key="an-access-key%2B%3D")
    assert fleet.redis_secret == SECRET.encode()
    assert "access-key" not in repr(current_settings())


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://cache.example.net:6379/0", "must use rediss://"),
        ("redis://10.0.0.5:6379/0", "must use rediss://"),
        ("https://cache.example.net", "must look like rediss://"),
        ("unix:///tmp/redis.sock", "must look like rediss://"),
        ("rediss://:key@host:notaport/0", "must look like rediss://"),
        ("rediss://:key/with/slash@host:6380/0", "must look like rediss://"),
        ("rediss://host:6380/0?ssl_cert_reqs=none", "must look like rediss://"),
        ("rediss://host:6380/zero", "the path is a database number"),
        ("rediss:///0", "must look like rediss://"),
    ],
)
def test_malformed_urls_name_the_setting_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", url)
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", SECRET)
    with pytest.raises(SettingsError) as caught:
        current_settings()
    assert caught.value.setting == "TOKEN_CACHE_REDIS_URL"
    assert problem in caught.value.detail
    assert url not in caught.value.detail
    assert "key" not in caught.value.problem.replace("access key", "")


def test_the_secret_is_required_with_redis_and_must_be_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(SettingsError) as missing:
        current_settings()
    assert missing.value.setting == "TOKEN_CACHE_REDIS_SECRET"
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", secret("short-secret"))
    with pytest.raises(SettingsError) as short:
        current_settings()
    assert short.value.setting == "TOKEN_CACHE_REDIS_SECRET"
    assert "short-secret" not in short.value.detail


@pytest.mark.parametrize(
    ("name", "raw", "field", "value"),
    [
        ("TOKEN_CACHE_REDIS_TIMEOUT_MS", "250", "redis_timeout_ms", 250),
        ("TOKEN_CACHE_LOCAL_SECONDS", "0", "local_cache_seconds", 0),
        ("TOKEN_CACHE_LOCAL_SECONDS", "1800", "local_cache_seconds", 1800),
    ],
)
def test_numbers(monkeypatch: pytest.MonkeyPatch, name: str, raw: str, field: str, value: int) -> None:
    monkeypatch.setenv(name, raw)
    assert getattr(current_settings().fleet, field) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TOKEN_CACHE_REDIS_TIMEOUT_MS", "abc"),
        ("TOKEN_CACHE_REDIS_TIMEOUT_MS", "0"),
        ("TOKEN_CACHE_REDIS_TIMEOUT_MS", "1.5"),
        ("TOKEN_CACHE_LOCAL_SECONDS", "-1"),
        ("TOKEN_CACHE_LOCAL_SECONDS", "1801"),
    ],
)
def test_malformed_numbers_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError) as caught:
        current_settings()
    assert caught.value.setting == name
