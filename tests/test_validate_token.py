"""ValidateToken end to end through `main(req)`, with Kaizala mocked at the transport (requests-mock)."""

import json
import time
from pathlib import Path

import pytest
import requests_mock

import ValidateToken
from tests.conftest import MOCK_URL
from tests.helpers import CARD_ID, OTHER_CARD_ID, identity_payload, json_of, make_jwt, request

IDENTITY_FIELDS = {"id", "name", "phoneNumber", "pictureUrl", "actionPackageId"}


@pytest.fixture
def kaizala() -> requests_mock.Mocker:
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload("user-1"))
        yield mocker


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json_of(response)
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"].endswith(".")
    return body


def test_bearer_token_returns_exactly_the_five_identity_fields(kaizala) -> None:
    token = make_jwt()
    response = ValidateToken.main(request(token=token))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = json_of(response)
    assert set(body) == IDENTITY_FIELDS
    assert body["id"] == "user-1"
    assert body["actionPackageId"] == CARD_ID
    assert kaizala.call_count == 1
    assert kaizala.last_request.headers["accessToken"] == token


def test_missing_fields_from_kaizala_are_null(kaizala) -> None:
    kaizala.get(MOCK_URL, json={"id": "u-2", "actionPackageId": CARD_ID, "name": 42})
    body = json_of(ValidateToken.main(request(token=make_jwt())))
    assert body == {"id": "u-2", "name": None, "phoneNumber": None, "pictureUrl": None, "actionPackageId": CARD_ID}


def test_accesstoken_header_is_accepted(kaizala) -> None:
    token = make_jwt()
    response = ValidateToken.main(request(headers={"accessToken": token}))
    assert response.status_code == 200
    assert kaizala.last_request.headers["accessToken"] == token


def test_bearer_wins_over_accesstoken_header(kaizala) -> None:
    bearer, other = make_jwt(), make_jwt()
    ValidateToken.main(request(token=bearer, headers={"accessToken": other}))
    assert kaizala.last_request.headers["accessToken"] == bearer


def test_post_body_token_is_accepted(kaizala) -> None:
    token = make_jwt()
    response = ValidateToken.main(request("POST", body=json.dumps({"token": token}).encode()))
    assert response.status_code == 200
    assert kaizala.last_request.headers["accessToken"] == token


def test_header_wins_over_body(kaizala) -> None:
    header, body = make_jwt(), make_jwt()
    ValidateToken.main(request("POST", token=header, body=json.dumps({"token": body}).encode()))
    assert kaizala.last_request.headers["accessToken"] == header


def test_get_ignores_a_body(kaizala) -> None:
    response = ValidateToken.main(request("GET", body=json.dumps({"token": make_jwt()}).encode()))
    assert_error(response, 401, "missing_token")
    assert kaizala.call_count == 0


@pytest.mark.parametrize("name", ["token", "accessToken", "access_token", "ACCESS_TOKEN"])
def test_token_in_query_string_is_refused_and_never_sent_upstream(kaizala, name: str) -> None:
    response = ValidateToken.main(request(token=make_jwt(), params={name: make_jwt()}))
    body = assert_error(response, 400, "invalid_request")
    assert "URL" in body["message"]
    assert kaizala.call_count == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"token"', b'{"token": 42}', b"\xff\xfe\x00", b'{"token": ["a"]}'],
)
def test_malformed_body_is_invalid_request(kaizala, body: bytes) -> None:
    assert_error(ValidateToken.main(request("POST", body=body)), 400, "invalid_request")
    assert kaizala.call_count == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer   "}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
def test_missing_token_is_401_with_bearer_challenge(kaizala, headers) -> None:
    response = ValidateToken.main(request(headers=headers))
    assert_error(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="kaizala"'
    assert kaizala.call_count == 0


def test_post_with_empty_object_body_is_missing_token(kaizala) -> None:
    assert_error(ValidateToken.main(request("POST", body=b"{}")), 401, "missing_token")
    assert_error(ValidateToken.main(request("POST", body=b'{"token": ""}')), 401, "missing_token")


def test_null_body_token_is_invalid_request(kaizala) -> None:
    """A card whose token call failed sends null: it hears that, not "no token was sent"."""
    body = assert_error(ValidateToken.main(request("POST", body=b'{"token": null}')), 400, "invalid_request")
    assert "string" in body["message"]


def test_unknown_query_parameter_is_400_after_authentication(kaizala) -> None:
    assert_error(ValidateToken.main(request(token=make_jwt(), params={"verbose": "1"})), 400, "invalid_request")
    assert_error(ValidateToken.main(request(params={"verbose": "1"})), 401, "missing_token")


@pytest.mark.parametrize(
    "token",
    [
        "a" * 4097,
        "abc def",
        "abc\tdef",
        "tok\u00e9n",
        "abc\x00def",
        "a.b.c",  # JWT-shaped, payload not decodable JSON
    ],
)
def test_malformed_token_is_rejected_locally(kaizala, token: str) -> None:
    response = ValidateToken.main(request(headers={"accessToken": token}))
    assert_error(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert kaizala.call_count == 0


def test_token_of_exactly_4096_characters_is_sent_upstream(kaizala) -> None:
    assert ValidateToken.main(request(token="a" * 4096)).status_code == 200
    assert kaizala.call_count == 1


def test_expired_jwt_is_rejected_locally(kaizala) -> None:
    response = ValidateToken.main(request(token=make_jwt(exp=time.time() - 61)))
    body = assert_error(response, 401, "invalid_token")
    assert "expired" in body["message"]
    assert kaizala.call_count == 0


def test_jwt_within_clock_skew_is_still_checked_upstream(kaizala) -> None:
    assert ValidateToken.main(request(token=make_jwt(exp=time.time() - 30))).status_code == 200
    assert kaizala.call_count == 1


@pytest.mark.parametrize("payload", [b"not json", b"[1]", {"exp": "tomorrow"}, {"exp": True}])
def test_jwt_with_unreadable_payload_or_exp_is_rejected_locally(kaizala, payload) -> None:
    assert_error(ValidateToken.main(request(token=make_jwt(payload=payload))), 401, "invalid_token")
    assert kaizala.call_count == 0


@pytest.mark.parametrize("status", [400, 401, 403])
def test_kaizala_rejection_is_invalid_token(kaizala, status: int) -> None:
    kaizala.get(MOCK_URL, status_code=status, json={"message": "nope"})
    assert_error(ValidateToken.main(request(token=make_jwt())), 401, "invalid_token")


def test_disallowed_card_is_forbidden(kaizala) -> None:
    kaizala.get(MOCK_URL, json=identity_payload("user-1", card=OTHER_CARD_ID))
    assert_error(ValidateToken.main(request(token=make_jwt())), 403, "forbidden")


def test_missing_action_package_id_is_forbidden(kaizala) -> None:
    kaizala.get(MOCK_URL, json=identity_payload("user-1", card=None))
    assert_error(ValidateToken.main(request(token=make_jwt())), 403, "forbidden")


def test_wildcard_accepts_any_card(kaizala, monkeypatch) -> None:
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", "*")
    kaizala.get(MOCK_URL, json=identity_payload("user-1", card=OTHER_CARD_ID))
    assert ValidateToken.main(request(token=make_jwt())).status_code == 200


def test_several_cards_may_be_allowed(kaizala, monkeypatch) -> None:
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", f" {CARD_ID} , {OTHER_CARD_ID} ")
    kaizala.get(MOCK_URL, json=identity_payload("user-1", card=OTHER_CARD_ID))
    assert ValidateToken.main(request(token=make_jwt())).status_code == 200


def test_user_allowlist(kaizala, monkeypatch) -> None:
    monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", "user-7,user-8")
    assert_error(ValidateToken.main(request(token=make_jwt())), 403, "forbidden")
    monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", "user-1")
    assert ValidateToken.main(request(token=make_jwt())).status_code == 200


def test_policy_applies_to_cached_identities_at_once(kaizala, monkeypatch) -> None:
    token = make_jwt()
    assert ValidateToken.main(request(token=token)).status_code == 200
    monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", "somebody-else")
    assert_error(ValidateToken.main(request(token=token)), 403, "forbidden")
    assert kaizala.call_count == 1  # the identity came from the cache; the verdict did not


@pytest.mark.parametrize("value", [None, "", "  ", " , "])
def test_unset_allowlist_fails_closed_without_upstream_call(kaizala, monkeypatch, caplog, value) -> None:
    if value is None:
        monkeypatch.delenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS")
    else:
        monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", value)
    assert_error(ValidateToken.main(request(token=make_jwt())), 500, "server_misconfigured")
    assert kaizala.call_count == 0
    assert "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS" in caplog.text


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b"[]", b'{"name": "no id"}', b'{"id": ""}', b'{"id": 12}', b'{"id": "   "}'],
)
def test_unusable_200_is_identity_bad_response(kaizala, body: bytes) -> None:
    kaizala.get(MOCK_URL, content=body)
    assert_error(ValidateToken.main(request(token=make_jwt())), 502, "identity_bad_response")


@pytest.mark.parametrize("status", [301, 302, 307, 404, 418, 204])
def test_unexpected_status_is_identity_bad_response(kaizala, status: int) -> None:
    kaizala.get(MOCK_URL, status_code=status, headers={"Location": "https://elsewhere.example/"})
    assert_error(ValidateToken.main(request(token=make_jwt())), 502, "identity_bad_response")
    assert kaizala.call_count == 1  # a redirect is never followed


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"), [(429, "17", "17"), (500, None, "5"), (503, "soon", "5")]
)
def test_unavailable_upstream_is_503_with_retry_after(kaizala, status, retry_after, expected) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    kaizala.get(MOCK_URL, status_code=status, headers=headers)
    response = ValidateToken.main(request(token=make_jwt()))
    assert_error(response, 503, "identity_unavailable")
    assert response.headers["Retry-After"] == expected


def test_connection_error_is_503(kaizala) -> None:
    import requests

    kaizala.get(MOCK_URL, exc=requests.ConnectionError("refused"))
    assert_error(ValidateToken.main(request(token=make_jwt())), 503, "identity_unavailable")


def test_unexpected_exception_is_a_json_internal_error(kaizala, monkeypatch, caplog) -> None:
    def explode(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("shared.policy.refusal", explode)
    response = ValidateToken.main(request(token=make_jwt()))
    assert_error(response, 500, "internal_error")
    assert "RuntimeError: boom" in caplog.text  # logged with its traceback


def test_order_query_token_before_settings(kaizala, monkeypatch) -> None:
    monkeypatch.delenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS")
    assert_error(ValidateToken.main(request(params={"token": make_jwt()})), 400, "invalid_request")


def test_order_settings_before_body_and_token(kaizala, monkeypatch) -> None:
    monkeypatch.delenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS")
    assert_error(ValidateToken.main(request("POST", body=b"{bad")), 500, "server_misconfigured")


def test_order_malformed_body_before_missing_token(kaizala) -> None:
    assert_error(ValidateToken.main(request("POST", body=b"{bad")), 400, "invalid_request")


def test_error_bodies_never_echo_the_token(kaizala) -> None:
    for token in ["x" * 5000, make_jwt(exp=1), "bad token"]:
        response = ValidateToken.main(request(headers={"accessToken": token}))
        assert token.encode() not in response.get_body()


@pytest.mark.parametrize("module", ["ValidateToken", "ProtectedApi"])
def test_main_has_the_signature_the_functions_worker_binds(module: str) -> None:
    # The Python worker matches main's parameters to function.json's bindings: only `req` may show, and `context`
    # (func.Context, which the worker passes by that name without a binding: the host's trace parent).
    import importlib
    import inspect

    import azure.functions as func

    main = importlib.import_module(module).main
    signature = inspect.signature(main)
    assert list(signature.parameters) == ["req", "context"]
    assert signature.parameters["req"].annotation is func.HttpRequest
    assert signature.parameters["context"].annotation is func.Context
    assert signature.return_annotation is func.HttpResponse
    bindings = json.loads(Path(f"{module}/function.json").read_text())["bindings"]
    assert {b["name"] for b in bindings} == {"req", "$return"}
