"""AUTH_PROVIDERS says which tokens count: Kaizala's, Teams', or both. Missing or ambiguous fails closed; a
Teams-only deployment needs no Kaizala setting and never calls Kaizala."""

import logging

import pytest
import requests
import requests_mock

from shared.settings import DEFAULT_IDENTITY_URL
from tests.conftest import MOCK_URL
from tests.devserver_process import devserver
from tests.entra import Entra
from tests.helpers import assert_refused, identity_payload, json_of, make_jwt, secret, validate

pytestmark = pytest.mark.usefixtures("teams_on")
KAIZALA_URLS = (MOCK_URL, DEFAULT_IDENTITY_URL)


@pytest.fixture
def any_kaizala():
    """Every Kaizala URL the app could call, mocked and counted (the keys endpoint goes out to 127.0.0.1)."""
    with requests_mock.Mocker(real_http=True) as mocker:
        matchers = [mocker.get(url, json=identity_payload("kaizala-user")) for url in KAIZALA_URLS]
        yield matchers


def kaizala_calls(matchers) -> int:
    return sum(matcher.call_count for matcher in matchers)


@pytest.fixture
def teams_only(teams_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_PROVIDERS", "teams")
    for name in ("KAIZALA_IDENTITY_URL", "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS"):  # no dummy Kaizala setting
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value", [None, "", "  ", ",", "kaizla", "kaizala;teams", "all", "*", "kaizala,entra"])
def test_missing_or_ambiguous_providers_fail_closed(
    value: str | None, monkeypatch: pytest.MonkeyPatch, entra: Entra, any_kaizala, no_secrets_in_logs
) -> None:
    if value is None:
        monkeypatch.delenv("AUTH_PROVIDERS")
    else:
        monkeypatch.setenv("AUTH_PROVIDERS", value)
    for token in (make_jwt(), entra.token()):
        assert_refused(validate(token), 500, "server_misconfigured")
    assert kaizala_calls(any_kaizala) == 0
    assert any("AUTH_PROVIDERS" in line for line in no_secrets_in_logs.lines)


@pytest.mark.parametrize("value", ["teams,kaizala", " Kaizala , TEAMS ", "kaizala teams"])
def test_both_may_be_named_in_any_order_and_case(value: str, monkeypatch: pytest.MonkeyPatch, entra: Entra) -> None:
    monkeypatch.setenv("AUTH_PROVIDERS", value)
    assert json_of(validate(entra.token()))["provider"] == "teams"


@pytest.mark.usefixtures("teams_only")
def test_teams_only_accepts_teams_tokens_and_never_calls_kaizala(entra: Entra, any_kaizala) -> None:
    assert json_of(validate(entra.token()))["provider"] == "teams"
    refused = validate(make_jwt())  # a Kaizala card's token
    assert_refused(refused, 401, "invalid_token")
    assert "Microsoft Teams tokens" in json_of(refused)["message"]
    missing = json_of(validate(""))
    assert "getAuthToken" in missing["message"]
    assert "Kaizala" not in missing["message"]
    assert kaizala_calls(any_kaizala) == 0


@pytest.mark.usefixtures("teams_only")
def test_teams_only_without_teams_settings_fails_closed(monkeypatch: pytest.MonkeyPatch, entra: Entra) -> None:
    for name in ("TEAMS_CLIENT_ID", "TEAMS_ALLOWED_TENANT_IDS", "TEAMS_APPLICATION_ID_URI", "TEAMS_AUTHORITY"):
        monkeypatch.delenv(name)
    assert_refused(validate(entra.token()), 500, "server_misconfigured")


def test_kaizala_only_ignores_teams_settings_and_says_so(
    monkeypatch: pytest.MonkeyPatch, entra: Entra, any_kaizala, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala")
    with caplog.at_level(logging.WARNING, logger="kaizala_auth"):
        assert json_of(validate(entra.token()))["id"] == "kaizala-user"  # Teams is off: Kaizala decides
    assert any(
        "TEAMS_CLIENT_ID" in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records
    )
    assert kaizala_calls(any_kaizala) == 1


def test_turning_kaizala_off_refuses_tokens_it_accepted(monkeypatch: pytest.MonkeyPatch, any_kaizala) -> None:
    token = make_jwt()
    assert validate(token).status_code == 200  # accepted and cached with both on
    monkeypatch.setenv("AUTH_PROVIDERS", "teams")
    assert_refused(validate(token), 401, "invalid_token")
    assert kaizala_calls(any_kaizala) == 1


@pytest.mark.slow
def test_the_local_host_runs_teams_only() -> None:
    with devserver("--providers", "teams") as running:
        assert "AUTH_PROVIDERS=teams" in running.output()
        teams = requests.post(f"{running.kaizala}/v1/dev/teams-tokens", json={}, timeout=5)
        assert teams.status_code == 201, teams.text
        token = secret(teams.json()["token"])
        answer = requests.get(
            f"{running.api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert (answer.status_code, answer.json()["provider"]) == (200, "teams")
        card = requests.get(
            f"{running.api}/api/ValidateToken", headers={"Authorization": f"Bearer {running.mint()}"}, timeout=10
        )
        assert card.status_code == 401
