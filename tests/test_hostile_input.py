"""Hostile input: property-based tests over headers, query strings, bodies and methods, and named cases.

Kaizala is healthy here (requests-mock answers every call with a valid identity), so any 5xx is our fault.
"""

import base64
import http.client
import json
import re

import pytest
import requests
import requests_mock
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ProtectedApi
import ValidateToken
from tests.conftest import MOCK_URL
from tests.devserver_process import devserver
from tests.helpers import b64url, identity_payload, json_of, make_jwt, request

FUNCTIONS = {"ValidateToken": ValidateToken.main, "ProtectedApi": ProtectedApi.main}
DOCUMENTED = {
    200: "",
    304: "",
    400: "invalid_request",
    401: {"missing_token", "invalid_token"},
    403: "forbidden",
}
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def acceptable_upstream(token: str) -> bool:
    """An oracle written apart from shared/tokens.py: what may ever be sent to Kaizala."""
    if not re.fullmatch(r"[\x21-\x7e]{1,4096}", token):
        return False
    parts = token.split(".")
    if len(parts) == 3:
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, RecursionError):
            return False
        if not isinstance(payload, dict):
            return False
        exp = payload.get("exp")
        if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float)):
            return False
    return True


jwt_like = st.builds(
    lambda header, payload, sig: f"{b64url(header)}.{b64url(payload)}.{sig}",
    st.binary(max_size=40),
    st.one_of(
        st.binary(max_size=60),
        st.builds(
            lambda exp: json.dumps({"exp": exp}).encode(), st.one_of(st.integers(), st.floats(), st.text(max_size=5))
        ),
    ),
    st.text(alphabet="abcXYZ019-_", max_size=20),
)
JWT_HEADER = b64url(b'{"alg":"HS256","typ":"JWT"}')
well_formed_jwt = st.builds(
    lambda sub, exp: f"{JWT_HEADER}.{b64url(json.dumps({'sub': sub, 'exp': exp}).encode())}.c2ln",
    st.text(alphabet="abcdef0123", min_size=1, max_size=12),
    st.integers(min_value=4_000_000_000, max_value=5_000_000_000),
)
token_text = st.one_of(
    well_formed_jwt, st.text(max_size=60), st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127)), jwt_like
)
header_value = st.one_of(
    token_text,
    st.builds(lambda t: f"Bearer {t}", well_formed_jwt),
    st.builds(lambda t: f"Bearer {t}", token_text),
    st.builds(lambda t: f"Basic {t}", token_text),
    st.sampled_from(["Bearer", "Bearer ", "bearer\t", "Bearer a b", "Bearer a\r\nX-Evil: 1", "Bearer \x00"]),
)
headers = st.dictionaries(
    st.sampled_from(["Authorization", "authorization", "accessToken", "ACCESSTOKEN", "If-None-Match", "Content-Type"]),
    header_value,
    max_size=3,
)
params = st.dictionaries(
    st.one_of(st.sampled_from(["q", "category", "limit", "token", "accessToken", "access_token"]), st.text(max_size=8)),
    st.one_of(st.sampled_from(["tea", "Coffee", "milk", "5", "100"]), st.text(max_size=30), st.integers().map(str)),
    max_size=3,
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v: json.dumps(v).encode(), st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=5)))),
    st.builds(lambda t: json.dumps({"token": t}).encode(), st.one_of(token_text, st.integers(), st.none())),
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])


def assert_documented(response, status_allowed=DOCUMENTED) -> None:
    assert response.status_code in status_allowed, response.status_code
    if response.status_code in (200, 304):
        return
    body = json_of(response)
    assert set(body) == {"error", "message"}
    expected = status_allowed[response.status_code]
    assert body["error"] in (expected if isinstance(expected, set) else {expected})


@HYPOTHESIS
@given(name=st.sampled_from(sorted(FUNCTIONS)), method=methods, headers=headers, params=params, body=bodies)
def test_any_request_gets_a_documented_answer_and_malformed_tokens_never_go_upstream(
    name, method, headers, params, body
) -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        response = FUNCTIONS[name](request(method, function=name, headers=headers, params=params, body=body))
        sent = [call.headers["accessToken"] for call in kaizala.request_history]
    event(f"{name} {response.status_code}, {'sent upstream' if sent else 'not sent'}")
    assert_documented(response)
    assert all(acceptable_upstream(token) for token in sent), sent
    if any(key.lower() in {"token", "accesstoken", "access_token"} for key in params):
        assert response.status_code == 400
        assert sent == []


@HYPOTHESIS
@given(token=token_text)
def test_a_token_that_fails_the_local_checks_never_reaches_kaizala(token) -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        response = ValidateToken.main(request(headers={"accessToken": token}))
        sent = kaizala.call_count
    if not acceptable_upstream(token):
        assert sent == 0
        assert response.status_code == 401
    assert_documented(response)


# --- named cases ------------------------------------------------------------------------------------------------


@pytest.fixture
def kaizala():
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload())
        yield mocker


@pytest.mark.parametrize("value", ["abc\r\ndef", "abc\ndef", "abc\rdef", "abc\x00def", "\x7f", "tok\u2028en"])
def test_control_characters_in_the_token_are_invalid_token(kaizala, value: str) -> None:
    response = ValidateToken.main(request(headers={"Authorization": f"Bearer {value}"}))
    assert json_of(response)["error"] == "invalid_token"
    assert kaizala.call_count == 0


def test_huge_header_is_refused_locally(kaizala) -> None:
    response = ValidateToken.main(request(token="a" * 1_000_000))
    assert json_of(response)["error"] == "invalid_token"
    assert len(response.get_body()) < 500
    assert kaizala.call_count == 0


def test_huge_body_is_invalid_request(kaizala) -> None:
    body = json.dumps({"token": make_jwt(), "padding": "x" * 1_000_000}).encode()
    response = ValidateToken.main(request("POST", body=body))
    assert json_of(response)["error"] == "invalid_request"
    assert kaizala.call_count == 0


@pytest.mark.parametrize("body", [b"\xff\xfe\xfd", b"\x80abc", '{"token": "é"}'.encode("latin-1")])
def test_non_utf8_bodies_are_invalid_request(kaizala, body: bytes) -> None:
    assert json_of(ValidateToken.main(request("POST", body=body)))["error"] == "invalid_request"


def test_bearer_nothing_and_basic_are_missing_token(kaizala) -> None:
    for value in ("Bearer", "Bearer    ", "Basic dXNlcjpwYXNz"):
        assert json_of(ValidateToken.main(request(headers={"Authorization": value})))["error"] == "missing_token"


# --- over the wire, through the local host ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with devserver() as running:
        yield running


def test_duplicate_authorization_headers_are_never_accepted(server) -> None:
    first, second = server.mint(), server.mint()
    host, port = server.api.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.putrequest("GET", "/api/ValidateToken")
    connection.putheader("Authorization", f"Bearer {first}")
    connection.putheader("Authorization", f"Bearer {second}")
    connection.endheaders()
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 401
    assert body["error"] == "invalid_token"


def test_header_line_over_64_kib_gets_a_json_error(server) -> None:
    response = requests.get(f"{server.api}/api/ValidateToken", headers={"X-Big": "a" * 70_000}, timeout=5)
    assert response.status_code == 431
    assert response.json()["error"] == "bad_request"


def test_body_over_the_hosts_limit_gets_a_json_413(server) -> None:
    response = requests.post(f"{server.api}/api/ValidateToken", data=b"x" * (11 * 1024 * 1024), timeout=10)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_non_utf8_body_over_the_wire(server) -> None:
    response = requests.post(f"{server.api}/api/ValidateToken", data=b"\xff\xfe{", timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
