"""The Teams provider when settings change under cached identities, and against hostile keys and headers: each
test failed until that was fixed.

Fixtures come from tests/conftest.py (a real JWKS endpoint on 127.0.0.1, Kaizala mocked)."""

import time

import pytest

from shared.authenticator import root
from shared.providers import signing_keys
from shared.providers.signing_keys import SigningKeys
from tests.entra import CLIENT_ID, OUTLOOK_WEB, TEAMS_DESKTOP, TENANT, USER, Entra
from tests.helpers import Reply, assert_refused, json_of, upstream_server, validate

pytestmark = pytest.mark.usefixtures("teams_on")

# --- R1: the audience check accepts api://<any host>/<client id> --------------------------------------------------


@pytest.mark.parametrize(
    "audience",
    [
        # Entra lets any app registration in a tenant take the identifier URI api://<tenant id>/<any string>, so
        # another (attacker-registered) app in an allowed tenant can own exactly this audience; its users' tokens
        # (v1 tokens carry the identifier URI as aud) would then be accepted here as if issued to our app.
        f"api://{TENANT}/{CLIENT_ID}",
        f"api://attacker.example/{CLIENT_ID}",
        f"api://{CLIENT_ID}/{CLIENT_ID}",
    ],
)
def test_an_application_id_uri_that_is_not_ours_is_refused(entra: Entra, audience: str) -> None:
    token = entra.token(entra.claims(version="1.0"), aud=audience)
    assert_refused(validate(token), 401, "invalid_token")


# --- R2: settings that decide which tokens count are not re-checked for cached identities ------------------------


def test_removing_a_client_app_cuts_off_its_cached_tokens(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_ALLOWED_CLIENT_APP_IDS", f"{TEAMS_DESKTOP},{OUTLOOK_WEB}")
    token = entra.token(azp=OUTLOOK_WEB)
    assert validate(token).status_code == 200
    monkeypatch.setenv("TEAMS_ALLOWED_CLIENT_APP_IDS", TEAMS_DESKTOP)  # Outlook is no longer allowed
    assert validate(entra.token(azp=OUTLOOK_WEB)).status_code == 403  # a new token: refused
    assert_refused(validate(token), 403, "forbidden")  # the cached one is still served (200) for minutes


def test_changing_the_client_id_cuts_off_tokens_for_the_old_app(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    token = entra.token()
    assert validate(token).status_code == 200
    monkeypatch.setenv("TEAMS_CLIENT_ID", "11111111-2222-4333-8444-555555555555")  # a new app registration
    monkeypatch.delenv("TEAMS_APPLICATION_ID_URI")
    assert validate(entra.token(oid="9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")).status_code == 401
    assert validate(token).status_code in (401, 403)  # still 200: aud was checked only when it was verified


# --- R3: "kid not in the set" during the refetch cool-down is remembered as a rejection --------------------------


def test_a_token_signed_by_a_new_key_is_accepted_once_the_key_can_be_fetched(
    entra: Entra, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert validate(entra.token()).status_code == 200  # keys fetched just now
    entra.rotate()  # Entra signs with a new key; the cool-down (REFETCH_SECONDS) forbids a refetch right now
    token = entra.token()  # the user's token; the Teams SDK hands the same cached token back on retry
    assert_refused(validate(token), 401, "invalid_token")  # documented: at most one refetch per 30 s
    monkeypatch.setattr(signing_keys, "REFETCH_SECONDS", 0.0)  # ... the 30 s have passed
    assert validate(entra.token(oid="9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")).status_code == 200  # key now known
    # The user's own token is now verifiable, but it was remembered as "rejected" for REJECTION_SECONDS (and,
    # with Redis, for every instance, including those that already hold the new key): still 401.
    assert validate(token).status_code == 200


def test_a_cool_down_miss_is_not_shared_with_the_fleet_as_a_rejection(
    entra: Entra, redis_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_db.client().flushall()
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", redis_db.url)
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", "teams-test-deployment-secret-0123456789")
    assert validate(entra.token()).status_code == 200
    entra.rotate()
    token = entra.token()
    assert_refused(validate(token), 401, "invalid_token")  # instance A: its set predates the key, cool-down
    # Instance B: a fresh process whose key set holds the new key.
    root().clear()
    root().forget_signing_keys()
    response = validate(token)
    assert response.status_code == 200, json_of(
        response
    )  # 401 "Kaizala rejected this token moments ago": A's miss, shared


# --- R4: a hostile JWKS (a private key published as a signing key) turns into 500 internal_error ------------------


def test_a_private_key_in_the_jwks_is_not_a_500(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    from jwt.algorithms import RSAAlgorithm

    private = {**RSAAlgorithm.to_jwk(entra.current.private, as_dict=True), "kid": entra.current.kid, "use": "sig"}
    with upstream_server(lambda _n, _t: Reply(body={"keys": [private]})) as hostile:
        scheme, _, rest = hostile.url.partition("://")
        monkeypatch.setenv("TEAMS_AUTHORITY", f"{scheme}://{rest.split('/', 1)[0]}")
        response = validate(entra.token())
    # Every error must be a documented one: the key should be skipped (502 identity_bad_response, no usable key)
    # or the token refused (401); instead AttributeError ('RSA' object has no attribute 'verify') -> 500.
    assert json_of(response)["error"] != "internal_error"


def test_signing_keys_skip_private_key_material(entra: Entra) -> None:
    from jwt.algorithms import RSAAlgorithm

    private = {**RSAAlgorithm.to_jwk(entra.current.private, as_dict=True), "kid": "k1", "use": "sig"}
    with upstream_server(lambda _n, _t: Reply(body={"keys": [private, entra.current.jwk()]})) as up:
        keys = SigningKeys()
        try:
            key = keys.key(up.url, "k1", time.monotonic() + 2)
        except Exception:  # refused in any documented way is fine
            return
        assert not hasattr(key.key, "private_numbers"), "a private key from the JWKS is used as a verification key"


# --- R5: Teams answers speak of Kaizala --------------------------------------------------------------------------


def test_a_remembered_teams_rejection_does_not_blame_kaizala(entra: Entra) -> None:
    token = entra.token(scp="User.Read")
    assert_refused(validate(token), 401, "invalid_token")
    again = validate(token)  # remembered
    assert_refused(again, 401, "invalid_token")
    assert "Kaizala" not in json_of(again)["message"]  # "Kaizala rejected this token moments ago..."


# --- R6: purge by object id depends on its letter case ------------------------------------------------------------


def test_purge_of_a_teams_user_matches_the_object_id_in_any_case(
    entra: Entra, redis_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.fleet import FleetCache

    redis_db.client().flushall()
    secret = "teams-test-deployment-secret-0123456789"
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", redis_db.url)
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", secret)
    assert validate(entra.token()).status_code == 200
    fleet = FleetCache(redis_db.url, secret.encode())
    try:
        # Object ids are GUIDs; the portal, Graph and PowerShell show them in either case (the settings parser
        # lower-cases them for that reason). The purge of USER.upper() finds nothing.
        assert fleet.purge_user(USER.upper()) == 1
    finally:
        fleet.close()


# --- R7: the cap on upstream calls is per provider, so the process runs twice as many -----------------------------


def test_kaizala_and_entra_calls_share_the_one_cap(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/how-it-works.md (Admission): "At most KAIZALA_MAX_CONCURRENT_CALLS upstream calls run at once per
    process, for both providers together". With Kaizala and Entra both slow, the cap still bounds them both."""
    import threading

    import requests_mock

    from tests.conftest import MOCK_URL
    from tests.helpers import identity_payload, make_jwt, secret

    monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", "2")
    release = threading.Event()

    def slow_kaizala(_request, _context):
        release.wait(5)
        return identity_payload("kaizala-user")

    with (
        upstream_server(lambda _n, _t: Reply(body=entra.jwks(), delay=1.5)) as slow_entra,
        requests_mock.Mocker(real_http=True) as mocker,
    ):
        mocker.get(MOCK_URL, json=slow_kaizala)
        scheme, _, rest = slow_entra.url.partition("://")
        monkeypatch.setenv("TEAMS_AUTHORITY", f"{scheme}://{rest.split('/', 1)[0]}")
        tokens = [secret(make_jwt()) for _ in range(2)]
        tokens += [entra.token(oid=f"{n:08d}-0000-4000-8000-000000000000") for n in range(2)]
        threads = [threading.Thread(target=validate, args=(token,), daemon=True) for token in tokens]
        for thread in threads:
            thread.start()
        time.sleep(0.6)
        running = root().admission.busy  # the process's calls in flight, both providers' (one count for both)
        assert running == root().admission.busy
        release.set()
        for thread in threads:
            thread.join(5)
    assert running <= 2, f"{running} upstream calls at once with KAIZALA_MAX_CONCURRENT_CALLS=2"


# --- R8: PyJWT before 2.14 lets a deeply nested header escape as RecursionError (500) -----------------------------


def _nested_header_token() -> str:
    import json

    from tests.helpers import b64url, secret

    header = b'{"alg":"RS256","kid":' + b"[" * 1000 + b"]" * 1000 + b"}"
    payload = {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "exp": int(time.time()) + 600}
    return secret(f"{b64url(header)}.{b64url(json.dumps(payload).encode())}.{b64url(b'x' * 256)}")


def test_a_deeply_nested_header_is_401_not_500() -> None:
    """Passes with the PyJWT installed here (2.15); with PyJWT 2.9-2.13, which requirements.txt allows
    (`pyjwt>=2.9,<3`), jwt.get_unverified_header raises RecursionError: an unsigned 2.8 KB token -> 500."""
    token = _nested_header_token()
    assert len(token) < 4096
    assert_refused(validate(token), 401, "invalid_token")


def test_requirements_floor_has_the_recursion_fix() -> None:
    from pathlib import Path

    line = next(line for line in Path("requirements.txt").read_text().splitlines() if line.startswith("pyjwt"))
    floor = line.split(">=")[1].split(",")[0].strip()
    assert tuple(int(part) for part in floor.split(".")) >= (2, 14), line
