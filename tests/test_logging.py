"""What the validation module logs: outcome, cache hit/miss, latency; never a token, a user id, a name, a phone
number, a UPN or an e-mail address."""

import logging

import requests_mock

import ValidateToken
from tests.conftest import MOCK_URL
from tests.helpers import identity_payload, make_jwt, request


def test_logs_outcome_and_cache_source_without_personal_data(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    payload = identity_payload("user-42", phone="+15550001111")
    token = make_jwt()
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=payload)
        ValidateToken.main(request(token=token))
        ValidateToken.main(request(token=token))
        mocker.get(MOCK_URL, status_code=401)
        ValidateToken.main(request(token=make_jwt()))
    text = caplog.text
    assert "user-42" not in text
    assert "Name of user-42" not in text
    assert "(miss)" in text
    assert "from cache" in text
    assert " ms" in text
    assert "invalid_token" in text
    assert token not in text
    assert "+15550001111" not in text


def test_the_session_fixture_sees_every_logger_at_every_level(no_secrets_in_logs) -> None:
    from tests.conftest import leaks

    token = make_jwt()
    logging.getLogger("some.library").debug("oops %s", token)
    assert leaks(no_secrets_in_logs.lines) == [f"oops {token}"]
    no_secrets_in_logs.lines.clear()  # this test leaked on purpose; the fixture's own check must still pass


def test_identity_repr_hides_the_phone_number() -> None:
    from shared.identity import Identity

    assert "+1555" not in repr(Identity("u", "n", "+15550001111", None, None))


def test_no_log_record_names_the_user_on_any_path(caplog, monkeypatch, teams_on, entra) -> None:
    """Kaizala and Teams, accepted, cached, refused by Kaizala, forbidden by card, by user and by tenant: every record
    of every logger at every level, exceptions included, names no user id, name, phone number, UPN or e-mail."""
    from tests.entra import OTHER_TENANT, USER

    caplog.set_level(logging.DEBUG)
    user, name, phone = "kz-logged-user-31", "Lakshmi Logtest", "+15550009876"
    payload = {**identity_payload(user, phone=phone), "name": name}
    kaizala_token, teams_token = make_jwt(), entra.token()
    with requests_mock.Mocker(real_http=True) as mocker:
        mocker.get(MOCK_URL, json=payload)
        for token in (kaizala_token, kaizala_token, teams_token, teams_token):
            assert ValidateToken.main(request(token=token)).status_code == 200
        monkeypatch.setenv("KAIZALA_BLOCKED_USER_IDS", user)
        monkeypatch.setenv("TEAMS_BLOCKED_USER_IDS", USER)
        assert ValidateToken.main(request(token=kaizala_token)).status_code == 403
        assert ValidateToken.main(request(token=teams_token)).status_code == 403
        mocker.get(MOCK_URL, json={**payload, "actionPackageId": "com.fabrikam.othercard"})
        assert ValidateToken.main(request(token=make_jwt())).status_code == 403
        assert ValidateToken.main(request(token=entra.token(entra.claims(tenant=OTHER_TENANT)))).status_code == 403
        mocker.get(MOCK_URL, status_code=401)
        assert ValidateToken.main(request(token=make_jwt())).status_code == 401
    claims = entra.claims()
    text = caplog.text
    assert "request forbidden" in text
    for needle in (user, name, phone, USER, claims["name"], claims["preferred_username"], "asha@contoso.example"):
        assert needle not in text, needle
