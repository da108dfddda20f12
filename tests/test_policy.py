"""Who may call: allowlists fail closed, refusals are logged with their reason, and a flood of valid tokens the
policy refuses cannot push an allowed user's identity out of the cache."""

import logging

import pytest
import requests_mock

import ValidateToken
from tests.conftest import MOCK_URL
from tests.helpers import CARD_ID, OTHER_CARD_ID, identity_payload, json_of, make_jwt, request


@pytest.fixture
def kaizala() -> requests_mock.Mocker:
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload("user-1"))
        yield mocker


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_unset_or_empty_user_allowlist_means_any_user(kaizala, monkeypatch, value) -> None:
    if value is None:
        monkeypatch.delenv("KAIZALA_ALLOWED_USER_IDS", raising=False)
    else:
        monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", value)
    assert ValidateToken.main(request(token=make_jwt())).status_code == 200


@pytest.mark.parametrize("value", [",", " , ", ",,"])
def test_a_user_allowlist_set_without_ids_fails_closed(kaizala, monkeypatch, caplog, value) -> None:
    monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", value)
    response = ValidateToken.main(request(token=make_jwt()))
    assert (response.status_code, json_of(response)["error"]) == (500, "server_misconfigured")
    assert kaizala.call_count == 0
    assert "KAIZALA_ALLOWED_USER_IDS" in caplog.text


@pytest.mark.parametrize("value", ["com.other,*", "*, com.other", f"{CARD_ID},*"])
def test_a_wildcard_mixed_with_ids_fails_closed(kaizala, monkeypatch, caplog, value) -> None:
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", value)
    response = ValidateToken.main(request(token=make_jwt()))
    assert (response.status_code, json_of(response)["error"]) == (500, "server_misconfigured")
    assert kaizala.call_count == 0
    assert "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS" in caplog.text


def test_only_a_lone_wildcard_means_any_card(kaizala, monkeypatch) -> None:
    kaizala.get(MOCK_URL, json=identity_payload("user-1", card=OTHER_CARD_ID))
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", " * ")
    assert ValidateToken.main(request(token=make_jwt())).status_code == 200


def test_refused_tokens_cannot_evict_an_allowed_user(kaizala, monkeypatch) -> None:
    """Before: 100 valid tokens for another card shared the bounded cache with allowed users and evicted them."""
    monkeypatch.setenv("TOKEN_CACHE_MAX_ENTRIES", "10")
    allowed = make_jwt()
    assert ValidateToken.main(request(token=allowed)).status_code == 200
    kaizala.get(MOCK_URL, json=identity_payload("outsider", card=OTHER_CARD_ID))
    for _ in range(100):
        assert ValidateToken.main(request(token=make_jwt())).status_code == 403
    calls = kaizala.call_count
    kaizala.get(MOCK_URL, json=identity_payload("user-1"))
    assert json_of(ValidateToken.main(request(token=allowed)))["id"] == "user-1"
    assert kaizala.call_count == calls  # still cached: no second upstream call


def test_a_refused_identity_is_still_cached_and_the_policy_applies_at_once(kaizala, monkeypatch) -> None:
    kaizala.get(MOCK_URL, json=identity_payload("outsider", card=OTHER_CARD_ID))
    token = make_jwt()
    assert ValidateToken.main(request(token=token)).status_code == 403
    assert ValidateToken.main(request(token=token)).status_code == 403
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", f"{CARD_ID},{OTHER_CARD_ID}")
    assert ValidateToken.main(request(token=token)).status_code == 200  # allowed now, without asking Kaizala again
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", CARD_ID)
    assert ValidateToken.main(request(token=token)).status_code == 403  # and refused again at once
    assert kaizala.call_count == 1


@pytest.mark.parametrize(
    ("card", "users", "reason"),
    [(OTHER_CARD_ID, "", "card not allowed"), (CARD_ID, "someone-else", "user not allowed")],
)
def test_a_403_is_logged_at_info_with_its_reason_not_the_user(
    kaizala, monkeypatch, caplog, card, users, reason
) -> None:
    kaizala.get(MOCK_URL, json=identity_payload("user-9", card=card))
    monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", users)
    with caplog.at_level(logging.INFO, logger="kaizala_auth"):
        assert ValidateToken.main(request(token=make_jwt())).status_code == 403
    refusals = [r for r in caplog.records if r.levelno == logging.INFO and "forbidden" in r.getMessage()]
    assert len(refusals) == 1
    assert reason in refusals[0].getMessage()
    assert f"card {card}" in refusals[0].getMessage()  # which card: the app's, nobody's personal data
    assert "user-9" not in refusals[0].getMessage()
