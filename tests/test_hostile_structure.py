"""Structure-heavy hostile input: deep nesting, very long digit strings, wide containers. Never a 5xx.

`json.loads` raises RecursionError (not ValueError) on deep nesting, and int() refuses more than 4,300 digits;
both used to escape as `500 internal_error`. Here they come from callers (bodies, JWT payloads) and from an
upstream (identity bodies, Retry-After).
"""

import json

import pytest
import requests_mock
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ValidateToken
from shared.errors import IdentityUnavailable
from tests.conftest import MOCK_URL
from tests.helpers import JWT_HEADER_B64, b64url, identity_payload, json_of, make_jwt, request, secret
from tests.test_hostile_input import acceptable_upstream, assert_documented

STRUCTURE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

depths = st.integers(min_value=1, max_value=30_000)
nested_text = st.one_of(
    st.builds(lambda d: "[" * d + "]" * d, depths),
    st.builds(lambda d: '{"a":' * d + "1" + "}" * d, depths),
    st.builds(lambda d: "[" * d, depths),  # never closed
    st.builds(lambda d: '[{"x":' * d + "null" + "}]" * d, st.integers(min_value=1, max_value=15_000)),
)
long_digits = st.builds(
    lambda n, lead: lead + "9" * n, st.integers(min_value=1, max_value=20_000), st.sampled_from(["", "-", "0"])
)
wide = st.one_of(
    st.builds(lambda n: json.dumps(list(range(n))), st.integers(min_value=0, max_value=20_000)),
    st.builds(lambda n: json.dumps({f"k{i}": i for i in range(n)}), st.integers(min_value=0, max_value=5_000)),
)
structure_heavy = st.one_of(nested_text, long_digits, wide, st.builds(lambda d: f"1e{d}", long_digits))


def in_token_body(value: str) -> str:
    return '{"token": ' + value + "}"


@STRUCTURE
@given(text=st.one_of(structure_heavy, structure_heavy.map(in_token_body)))
def test_structure_heavy_bodies_are_400_never_500(text: str) -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        response = ValidateToken.main(request("POST", body=text.encode()))
        sent = kaizala.call_count
    event(f"{response.status_code}")
    assert_documented(response)
    assert response.status_code in (400, 401)
    assert sent == 0


@STRUCTURE
@given(payload=st.one_of(structure_heavy, structure_heavy.map(lambda v: '{"exp": ' + v + "}")))
def test_structure_heavy_jwt_payloads_are_refused_locally_or_sent_only_when_acceptable(payload: str) -> None:
    token = secret(f"{JWT_HEADER_B64}.{b64url(payload.encode())}.c2ln")
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        response = ValidateToken.main(request(headers={"accessToken": token}))
        sent = [call.headers["accessToken"] for call in kaizala.request_history]
    event(f"{response.status_code}, {'sent' if sent else 'not sent'}")
    assert_documented(response)
    assert all(acceptable_upstream(value) for value in sent)
    if not acceptable_upstream(token):
        assert (response.status_code, json_of(response)["error"]) == (401, "invalid_token")


@STRUCTURE
@given(body=st.one_of(structure_heavy, structure_heavy.map(lambda v: '{"id": "u", "name": ' + v + "}")))
def test_structure_heavy_upstream_bodies_are_502_never_500(body: str) -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, text=body)
        response = ValidateToken.main(request(token=make_jwt()))
    event(f"{response.status_code}")
    assert_documented(response, {**_DOCUMENTED_UPSTREAM, 200: ""})
    if response.status_code != 200:
        assert response.status_code in (403, 502)


_DOCUMENTED_UPSTREAM = {403: "forbidden", 502: "identity_bad_response", 503: "identity_unavailable"}


@STRUCTURE
@given(value=st.one_of(long_digits, st.text(max_size=50), st.integers(min_value=0).map(str)))
def test_any_retry_after_from_kaizala_is_a_503_with_a_usable_retry_after(value: str) -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, status_code=429, headers={"Retry-After": value.replace("\r", "").replace("\n", "")})
        response = ValidateToken.main(request(token=make_jwt()))
    assert (response.status_code, json_of(response)["error"]) == (503, "identity_unavailable")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 0 <= int(retry_after) <= 300


# --- named cases, each once a defect -----------------------------------------------------------------------------


def test_a_deeply_nested_body_is_invalid_request() -> None:
    response = ValidateToken.main(request("POST", body=b"[" * 20_000))
    assert (response.status_code, json_of(response)["error"]) == (400, "invalid_request")


def test_a_jwt_whose_payload_is_nested_arrays_is_invalid_token_without_an_upstream_call() -> None:
    token = secret(f"{JWT_HEADER_B64}.{b64url(b'[' * 2_900)}.c2ln")
    assert len(token) < 4096
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        response = ValidateToken.main(request(token=token))
        assert kaizala.call_count == 0
    assert (response.status_code, json_of(response)["error"]) == (401, "invalid_token")


def test_nested_json_from_kaizala_is_identity_bad_response() -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, text="[" * 20_000 + "]" * 20_000)
        response = ValidateToken.main(request(token=make_jwt()))
    assert (response.status_code, json_of(response)["error"]) == (502, "identity_bad_response")


@pytest.mark.parametrize("digits", [5_000, 100_000])
def test_a_retry_after_of_thousands_of_digits_gets_our_default(digits: int) -> None:
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, status_code=503, headers={"Retry-After": "9" * digits})
        response = ValidateToken.main(request(token=make_jwt()))
    assert (response.status_code, json_of(response)["error"]) == (503, "identity_unavailable")
    assert response.headers["Retry-After"] == str(IdentityUnavailable.DEFAULT_RETRY_AFTER)
