"""Each setting: its default, a valid change, and a malformed value failing closed with a log line naming it."""

import pytest
import requests_mock

import ProtectedApi
import ValidateToken
from shared.settings import DEFAULT_IDENTITY_URL, current_settings
from tests.conftest import MOCK_URL
from tests.helpers import identity_payload, json_of, make_jwt, request


def test_defaults(monkeypatch) -> None:
    monkeypatch.delenv("KAIZALA_IDENTITY_URL")
    monkeypatch.delenv("KAIZALA_TIMEOUT_SECONDS")
    monkeypatch.delenv("TOKEN_REFRESH_AHEAD")
    settings = current_settings()
    assert settings.identity_url == DEFAULT_IDENTITY_URL == "https://kms1.kaiza.la/v1/users/me"
    assert settings.timeout_seconds == 5
    assert settings.cache_seconds == 300
    assert settings.cache_max_entries == 10_000
    assert settings.refresh_ahead is True
    assert settings.allowed_user_ids == frozenset()
    assert settings.products_file.name == "products.json"


def test_changes_apply_without_reimport(monkeypatch) -> None:
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "42")
    assert current_settings().cache_seconds == 42
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "43")
    assert current_settings().cache_seconds == 43


def test_identity_url_is_used(monkeypatch) -> None:
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", "https://identity.example/me")
    with requests_mock.Mocker() as mocker:
        mocker.get("https://identity.example/me", json=identity_payload())
        assert ValidateToken.main(request(token=make_jwt())).status_code == 200
        assert mocker.call_count == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKEN_CACHE_SECONDS", "abc"),
        ("TOKEN_CACHE_SECONDS", "-1"),
        ("TOKEN_CACHE_SECONDS", "1.5"),
        ("TOKEN_CACHE_MAX_ENTRIES", "0"),
        ("TOKEN_CACHE_MAX_ENTRIES", "many"),
        ("KAIZALA_TIMEOUT_SECONDS", "nan"),
        ("KAIZALA_TIMEOUT_SECONDS", "0"),
        ("KAIZALA_TIMEOUT_SECONDS", "soon"),
        ("TOKEN_REFRESH_AHEAD", "maybe"),
        ("KAIZALA_IDENTITY_URL", "ftp://kaizala.example/me"),
        ("KAIZALA_IDENTITY_URL", "http://kaizala.example/v1/users/me"),
        ("KAIZALA_IDENTITY_URL", "not a url"),
        ("KAIZALA_IDENTITY_URL", "https://kaizala.example/me?x=1"),
        ("KAIZALA_ALLOWED_USER_IDS", ","),  # set, but no id in it: not "any user"
        ("KAIZALA_ALLOWED_USER_IDS", " , "),
        ("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", "com.other,*"),  # only * alone means any card
        ("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", "*,*,com.other"),
        ("KAIZALA_IDENTITY_URL", "https://[::1/v1/users/me"),  # not even parseable
        ("KAIZALA_IDENTITY_URL", "https://kms1.kaiza.la:99999/v1/users/me"),
        ("KAIZALA_BLOCKED_USER_IDS", " , "),
        ("KAIZALA_MAX_CONCURRENT_CALLS", "0"),
        ("KAIZALA_MAX_CONCURRENT_CALLS", "lots"),
    ],
)
def test_malformed_setting_is_server_misconfigured_and_logged(monkeypatch, caplog, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with requests_mock.Mocker() as mocker:
        response = ValidateToken.main(request(token=make_jwt()))
        assert mocker.call_count == 0
    assert response.status_code == 500
    assert json_of(response)["error"] == "server_misconfigured"
    assert name in caplog.text
    assert name not in response.get_body().decode()  # operators read logs; callers get a generic sentence


@pytest.mark.parametrize("url", ["http://127.0.0.1:7072/v1/users/me", "http://localhost:9/me", "http://[::1]:9/me"])
def test_plain_http_is_allowed_for_loopback_only(monkeypatch, url: str) -> None:
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", url)
    assert current_settings().identity_url == url


def test_products_file_problems_are_server_misconfigured(monkeypatch, caplog, tmp_path) -> None:
    bad = tmp_path / "products.json"
    bad.write_text('[{"id": "x"}]')
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload())
        for path in (bad, tmp_path / "missing.json"):
            monkeypatch.setenv("PRODUCTS_FILE", str(path))
            response = ProtectedApi.main(request(function="ProtectedApi", token=make_jwt()))
            assert response.status_code == 500
            assert json_of(response)["error"] == "server_misconfigured"
    assert caplog.text.count("PRODUCTS_FILE") == 2


def test_one_request_sees_one_snapshot_of_the_settings(monkeypatch) -> None:
    from shared.settings import OneSnapshotPerRequest

    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "10")
    with OneSnapshotPerRequest():
        assert current_settings().cache_seconds == 10
        monkeypatch.setenv("TOKEN_CACHE_SECONDS", "20")
        assert current_settings().cache_seconds == 10  # the request goes on with what it started with
    assert current_settings().cache_seconds == 20  # the next request sees the change


# --- Teams tabs ---------------------------------------------------------------------------------------------------


def test_teams_is_off_without_teams_settings() -> None:
    from shared.settings import current_settings

    assert current_settings().teams is None


def test_teams_settings_parse_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import DEFAULT_TEAMS_AUTHORITY, TEAMS_CLIENT_APP_IDS, current_settings

    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala,teams")
    monkeypatch.setenv("TEAMS_CLIENT_ID", "6A2B9C4D-1E3F-4A5B-8C7D-0E9F1A2B3C4D")
    monkeypatch.setenv(
        "TEAMS_ALLOWED_TENANT_IDS", " 8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70 , 0b9d7e5c-3a1f-4c28-b6e4-9f2a7c1d5e83"
    )
    teams = current_settings().teams
    assert teams is not None
    assert teams.client_id == "6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d"
    assert teams.allowed_tenant_ids == {"8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70", "0b9d7e5c-3a1f-4c28-b6e4-9f2a7c1d5e83"}
    assert teams.allowed_client_app_ids == TEAMS_CLIENT_APP_IDS
    assert teams.authority == DEFAULT_TEAMS_AUTHORITY
    assert teams.keys_url("t") == "https://login.microsoftonline.com/t/discovery/v2.0/keys"
    monkeypatch.setenv("TEAMS_AUTHORITY", "http://127.0.0.1:9999/")
    assert current_settings().teams.keys_url("t") == "http://127.0.0.1:9999/t/discovery/v2.0/keys"


def test_every_setting_is_in_the_example_settings_and_the_settings_page() -> None:
    import json
    from pathlib import Path

    from shared.settings import SETTING_NAMES

    root = Path(__file__).resolve().parent.parent
    example = json.loads((root / "local.settings.json.example").read_text())["Values"]
    settings_page = (root / "docs" / "settings.md").read_text()  # the settings table
    for name in SETTING_NAMES:
        assert name in example, name
        assert f"`{name}`" in settings_page, name
