"""Teams tab tokens: every check the Teams provider makes, each shown by a token that differs from a
valid one in exactly that respect, against a real JWKS endpoint on 127.0.0.1. Kaizala is mocked (passing other
requests through), so a test can also show that a Teams token never reaches it."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests_mock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ProtectedApi
import ValidateToken
from shared.authenticator import root
from shared.providers import signing_keys
from tests.conftest import APPLICATION_ID_URI, MOCK_URL, TEAMS_SETTINGS
from tests.entra import (
    CLIENT_ID,
    OTHER_TENANT,
    OTHER_USER,
    OUTLOOK_WEB,
    TEAMS_DESKTOP,
    TENANT,
    USER,
    Entra,
    SigningKey,
)
from tests.helpers import (
    Reply,
    Upstream,
    assert_refused,
    b64url,
    json_of,
    make_jwt,
    origin,
    request,
    upstream_server,
    validate,
)

TEAMS_FIELDS = {"provider", "id", "name", "tenantId", "userPrincipalName"}
pytestmark = pytest.mark.usefixtures("teams_on")


# --- a valid token ------------------------------------------------------------------------------------------------


def test_a_teams_token_gets_the_teams_identity(entra: Entra, kaizala, keys_endpoint: Upstream) -> None:
    response = validate(entra.token())
    assert response.status_code == 200
    assert json_of(response) == {
        "provider": "teams",
        "id": USER,
        "name": "Asha Rao",
        "tenantId": TENANT,
        "userPrincipalName": "asha@contoso.example",
    }
    assert kaizala.call_count == 0  # a Teams token never reaches Kaizala
    assert len(keys_endpoint.calls) == 1


def test_the_same_protected_api_serves_a_teams_tab(entra: Entra, kaizala) -> None:
    response = ProtectedApi.main(request(function="ProtectedApi", token=entra.token()))
    assert response.status_code == 200
    assert json_of(response)["products"]
    assert kaizala.call_count == 0


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_both_issuer_forms_are_accepted(entra: Entra, version: str) -> None:
    body = json_of(validate(entra.token(entra.claims(version=version))))
    assert (body["id"], body["tenantId"]) == (USER, TENANT)
    assert set(body) == TEAMS_FIELDS


@pytest.mark.parametrize("audience", [CLIENT_ID, CLIENT_ID.upper(), f"api://{CLIENT_ID}", APPLICATION_ID_URI])
def test_the_audience_may_be_the_client_id_or_the_application_id_uri(entra: Entra, audience: str) -> None:
    assert validate(entra.token(aud=audience)).status_code == 200


def test_without_teams_application_id_uri_only_the_client_id_is_an_audience(
    entra: Entra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEAMS_APPLICATION_ID_URI")
    assert validate(entra.token(aud=CLIENT_ID)).status_code == 200
    assert_refused(validate(entra.token(aud=APPLICATION_ID_URI)), 401, "invalid_token")


def test_keys_are_fetched_once_and_then_cached(entra: Entra, keys_endpoint: Upstream) -> None:
    for user in (USER, OTHER_USER, USER):
        assert validate(entra.token(oid=user)).status_code == 200
    assert len(keys_endpoint.calls) == 1


def test_a_cached_teams_identity_is_not_verified_again(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    token = entra.token()
    assert validate(token).status_code == 200
    verifier = root().teams_verifier()
    calls: list[str] = []
    original = verifier.verify
    monkeypatch.setattr(verifier, "verify", lambda *args: calls.append("verify") or original(*args))
    assert validate(token).status_code == 200
    assert calls == []


# --- each check, with a token wrong in exactly that respect --------------------------------------------------------

WRONG_TOKENS = {
    # name: (how the token differs, expected status, expected code)
    "another audience": (lambda e: e.token(aud="11111111-2222-4333-8444-555555555555"), 401, "invalid_token"),
    "another app's uri": (
        lambda e: e.token(aud="api://contoso.example/11111111-2222-4333-8444-555555555555"),
        401,
        "invalid_token",
    ),
    "v2 issuer without /v2.0": (
        lambda e: e.token(iss=f"https://login.microsoftonline.com/{TENANT}/"),
        401,
        "invalid_token",
    ),
    "v1 issuer without the slash": (lambda e: e.token(iss=f"https://sts.windows.net/{TENANT}"), 401, "invalid_token"),
    "issuer tenant is not tid": (lambda e: e.token(tid=OTHER_TENANT), 401, "invalid_token"),
    "no access_as_user scope": (lambda e: e.token(scp="User.Read"), 401, "invalid_token"),
    "scope as a prefix": (lambda e: e.token(scp="access_as_user_extra"), 401, "invalid_token"),
    "no scope": (lambda e: e.token(scp=None), 401, "invalid_token"),
    "alg none": (lambda e: e.token(algorithm="none"), 401, "invalid_token"),
    "alg HS256": (lambda e: e.token(algorithm="HS256"), 401, "invalid_token"),
    "no kid": (lambda e: e.token(headers={"kid": None}), 401, "invalid_token"),
    "unknown kid": (lambda e: e.token(headers={"kid": "not-a-published-kid"}), 401, "invalid_token"),
    "a key outside the JWKS": (lambda e: e.token(key=SigningKey()), 401, "invalid_token"),
    "a key outside the JWKS under a published kid": (
        lambda e: e.token(key=SigningKey(kid=e.current.kid)),
        401,
        "invalid_token",
    ),
    "expired": (lambda e: e.token(exp=int(__import__("time").time()) - 120), 401, "invalid_token"),
    "not yet valid": (lambda e: e.token(nbf=int(__import__("time").time()) + 600), 401, "invalid_token"),
    "no nbf": (lambda e: e.token(nbf=None), 401, "invalid_token"),
    "no oid": (lambda e: e.token(oid=None), 401, "invalid_token"),
    "another tenant": (lambda e: e.token(e.claims(tenant=OTHER_TENANT)), 403, "forbidden"),
    "an app that is not Teams": (lambda e: e.token(azp=OUTLOOK_WEB), 403, "forbidden"),
    "a v1 token from an app that is not Teams": (
        lambda e: e.token(e.claims(version="1.0"), appid=OUTLOOK_WEB),
        403,
        "forbidden",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_TOKENS))
def test_a_token_wrong_in_one_respect_is_refused(case: str, entra: Entra, kaizala) -> None:
    make, status, code = WRONG_TOKENS[case]
    assert validate(entra.token()).status_code == 200  # the valid token it differs from
    assert_refused(validate(make(entra)), status, code)
    assert kaizala.call_count == 0  # never sent to Kaizala instead


def test_another_tenant_costs_no_key_fetch(entra: Entra, keys_endpoint: Upstream) -> None:
    assert_refused(validate(entra.token(entra.claims(tenant=OTHER_TENANT))), 403, "forbidden")
    assert keys_endpoint.calls == []


def test_an_allowed_outlook_host_is_accepted_when_listed(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_ALLOWED_CLIENT_APP_IDS", f"{TEAMS_DESKTOP},{OUTLOOK_WEB}")
    assert validate(entra.token(azp=OUTLOOK_WEB)).status_code == 200


def test_clock_skew_is_allowed_as_for_kaizala_tokens(entra: Entra) -> None:
    import time

    assert validate(entra.token(exp=int(time.time()) - 20)).status_code == 200
    assert validate(entra.token(nbf=int(time.time()) + 20)).status_code == 200


# --- signing keys ---------------------------------------------------------------------------------------------------


def test_unknown_kids_refetch_at_most_once_per_interval(entra: Entra, keys_endpoint: Upstream) -> None:
    assert validate(entra.token()).status_code == 200
    for number in range(50):
        assert_refused(validate(entra.token(headers={"kid": f"made-up-{number}"})), 401, "invalid_token")
    assert len(keys_endpoint.calls) <= 2  # the first fetch, and at most one refetch for the whole burst


def test_a_rotated_key_is_picked_up_and_the_retired_one_refused(
    entra: Entra, keys_endpoint: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signing_keys, "REFETCH_SECONDS", 0.0)  # the interval is tested above
    old_token = entra.token()
    assert validate(old_token).status_code == 200
    entra.rotate()
    assert validate(entra.token(oid=OTHER_USER)).status_code == 200  # unknown kid: refetched, now published
    assert len(keys_endpoint.calls) == 2
    root().clear()
    assert_refused(validate(old_token), 401, "invalid_token")  # its key is no longer published


def test_entra_unreachable_with_no_keys_is_503(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    with upstream_server(lambda _n, _t: Reply(status=503, body={"error": "down"})) as down:
        monkeypatch.setenv("TEAMS_AUTHORITY", origin(down))
        response = validate(entra.token())
    assert_refused(response, 503, "identity_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def test_concurrent_first_requests_share_one_key_fetch(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=entra.jwks(), delay=0.3)) as slow:
        monkeypatch.setenv("TEAMS_AUTHORITY", origin(slow))
        tokens = [entra.token(oid=f"{number:08d}-0000-4000-8000-000000000000") for number in range(16)]
        start = threading.Barrier(16)

        def call(token: str) -> int:
            start.wait()
            return validate(token).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(call, tokens))
    assert statuses == [200] * 16
    assert len(slow.calls) == 1


# --- routing ---------------------------------------------------------------------------------------------------------


def test_a_kaizala_token_never_reaches_entra(kaizala, keys_endpoint: Upstream) -> None:
    body = json_of(validate(make_jwt()))
    assert body["id"] == "kaizala-user"
    assert "provider" not in body
    assert kaizala.call_count == 1
    assert keys_endpoint.calls == []


def test_a_lookalike_issuer_is_not_entras_and_goes_to_kaizala(entra: Entra, kaizala, keys_endpoint: Upstream) -> None:
    lookalike = entra.token(iss=f"https://login.microsoftonline.com.evil.example/{TENANT}/v2.0")
    assert json_of(validate(lookalike))["id"] == "kaizala-user"  # (the mocked Kaizala accepts anything)
    assert kaizala.call_count == 1
    assert keys_endpoint.calls == []


def test_with_kaizala_alone_an_entra_token_goes_to_kaizala(
    entra: Entra, kaizala, keys_endpoint: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala")
    for name in TEAMS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert json_of(validate(entra.token()))["id"] == "kaizala-user"
    assert kaizala.call_count == 1
    assert keys_endpoint.calls == []


# --- policy ----------------------------------------------------------------------------------------------------------


def test_a_blocked_teams_user_is_refused_even_when_cached(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    token = entra.token()
    assert validate(token).status_code == 200
    monkeypatch.setenv("TEAMS_BLOCKED_USER_IDS", USER)
    assert_refused(validate(token), 403, "forbidden")


def test_kaizala_lists_do_not_apply_to_teams_users(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZALA_BLOCKED_USER_IDS", USER)
    monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", "someone-else")
    assert validate(entra.token()).status_code == 200


def test_teams_user_allowlist(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_ALLOWED_USER_IDS", OTHER_USER)
    assert_refused(validate(entra.token()), 403, "forbidden")
    assert validate(entra.token(oid=OTHER_USER)).status_code == 200


def test_a_tenant_removed_from_the_allowlist_is_refused_even_when_cached(
    entra: Entra, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = entra.token()
    assert validate(token).status_code == 200
    monkeypatch.setenv("TEAMS_ALLOWED_TENANT_IDS", OTHER_TENANT)
    assert_refused(validate(token), 403, "forbidden")


@pytest.mark.parametrize(
    "changes",
    [
        {"TEAMS_CLIENT_ID": ""},  # other TEAMS_ settings without the client id
        {"TEAMS_CLIENT_ID": "my-app"},
        {"TEAMS_ALLOWED_TENANT_IDS": ""},
        {"TEAMS_ALLOWED_TENANT_IDS": "*"},
        {"TEAMS_ALLOWED_TENANT_IDS": "common"},
        {"TEAMS_ALLOWED_TENANT_IDS": f"{TENANT},organizations"},
        {"TEAMS_ALLOWED_TENANT_IDS": ","},
        {"TEAMS_ALLOWED_CLIENT_APP_IDS": "*"},
        {"TEAMS_AUTHORITY": "http://login.example.com"},
        {"TEAMS_AUTHORITY": "https://login.example.com?x=1"},
        {"TEAMS_BLOCKED_USER_IDS": "not-a-guid"},
    ],
)
def test_half_or_wrongly_configured_teams_fails_closed(
    changes: dict[str, str], entra: Entra, kaizala, monkeypatch: pytest.MonkeyPatch, no_secrets_in_logs
) -> None:
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    for token in (entra.token(), make_jwt()):  # Kaizala tokens too: the settings as a whole are wrong
        assert_refused(validate(token), 500, "server_misconfigured")
    assert kaizala.call_count == 0
    assert any(name in line for line in no_secrets_in_logs.lines for name in changes)


# --- the same cache: in-process and Redis; Kaizala's throttle is Kaizala's ------------------------------------------


def test_kaizalas_429_does_not_hold_back_teams_sign_ins(entra: Entra) -> None:
    with requests_mock.Mocker(real_http=True) as throttled:
        throttled.get(MOCK_URL, status_code=429, headers={"Retry-After": "60"})
        assert_refused(validate(make_jwt()), 503, "identity_unavailable")
        assert_refused(validate(make_jwt()), 503, "identity_unavailable")  # held back without asking again
        assert throttled.call_count == 1
        assert validate(entra.token()).status_code == 200


def test_a_teams_identity_is_shared_through_redis_sealed(
    entra: Entra, redis_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_db.client().flushall()
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", redis_db.url)
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", "teams-test-deployment-secret-0123456789")
    token = entra.token()
    first = json_of(validate(token))
    root().clear()  # this instance forgets; the fleet remembers
    verifier = root().teams_verifier()
    monkeypatch.setattr(verifier, "verify", lambda *_args: pytest.fail("verified again instead of read from Redis"))
    assert json_of(validate(token)) == first
    blob = b"".join(
        key + (redis_db.client().get(key) or b"")
        for key in redis_db.client().scan_iter()
        if redis_db.client().type(key) == b"string"
    )
    for revealing in (USER, TENANT, "Asha", "asha@contoso.example", token):
        assert revealing.encode() not in blob


# --- hostile headers ----------------------------------------------------------------------------------------------

_HEADER_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.lists(st.integers(), max_size=2)
)
_HEADERS = st.one_of(
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "jku", "x5u", "jwk", "crit", "b64", "cty"]), _HEADER_VALUES),
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["RS256", "rs256", "none", "HS256", "ES256", "PS256"])},
        optional={"kid": _HEADER_VALUES},
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(
        _HEADERS.map(lambda h: b64url(json.dumps(h).encode())),
        st.text(max_size=40).map(lambda t: b64url(t.encode())),
        st.text("abcXYZ-_=", max_size=30),
    )
)
def test_a_malformed_header_on_an_entra_token_is_401_and_never_reaches_kaizala(
    entra: Entra, kaizala, header: str
) -> None:
    genuine = entra.token()
    _, payload, signature = genuine.split(".")
    response = validate(f"{header}.{payload}.{signature}")
    assert (response.status_code, json_of(response)["error"]) == (401, "invalid_token")
    assert kaizala.call_count == 0


def test_without_a_token_the_answer_says_how_a_tab_gets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json_of(ValidateToken.main(request()))
    assert body["error"] == "missing_token"
    assert "microsoftTeams.authentication.getAuthToken()" in body["message"]
    for name in TEAMS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert "getAuthToken" not in json_of(ValidateToken.main(request()))["message"]  # Teams off: today's answer


def test_a_teams_token_with_a_large_groups_claim_is_accepted_but_kaizala_keeps_its_limit(
    entra: Entra, kaizala, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups = [f"{number:08d}-1111-4222-8333-444444444444" for number in range(200)]  # Entra's most in a JWT
    large = entra.token(groups=groups)
    assert 4096 < len(large) <= 16 * 1024
    assert validate(large).status_code == 200
    long_kaizala = make_jwt(payload={"sub": "x" * 5000, "exp": 4102444800})
    assert_refused(validate(long_kaizala), 401, "invalid_token")
    assert kaizala.call_count == 0
    too_large = entra.token(groups=groups * 3)
    assert_refused(validate(too_large), 401, "invalid_token")
    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala")  # Teams off: Kaizala's limit for every token
    assert_refused(validate(large), 401, "invalid_token")
    assert kaizala.call_count == 0
