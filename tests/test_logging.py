"""What the validation module logs: outcome, user id, cache hit/miss, latency; never a token or phone number."""

import logging

import requests_mock

import ValidateToken
from tests.conftest import MOCK_URL
from tests.helpers import identity_payload, make_jwt, request


def test_logs_outcome_user_and_cache_source_without_secrets(caplog) -> None:
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
    assert "user user-42" in text
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
