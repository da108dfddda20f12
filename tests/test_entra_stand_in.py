"""The Entra ID stand-in over real HTTP: discovery, the JWKS, Teams tab tokens and each way to break them, key
rotation, the entra_down fault, stats, and the dev endpoints' loopback-only rule."""

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from werkzeug.test import Client

from devserver.entra import TEAMS_CLIENT_APP_ID
from devserver.kaizala import KaizalaStandIn
from devserver.wsgi import serve
from tests.helpers import secret

TENANT = "8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70"
CLIENT_ID = "6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d"
OTHER_TENANT = "0b1c2d3e-4f50-4a6b-9c7d-8e9fa0b1c2d3"
V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
FIRST_USER = {"name": "Asha Rao", "userPrincipalName": "asha@contoso.example"}


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """One stand-in on a free loopback port for the module, as `python -m devserver` serves it; its base URL."""
    server = serve(KaizalaStandIn(), "127.0.0.1", 0, access_log=False)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()


@pytest.fixture
def base(served: str) -> Iterator[str]:
    """The stand-in's URL (the Entra authority), with no fault on and the stats at zero for each test."""
    url = served
    requests.delete(f"{url}/v1/dev/faults", timeout=5).raise_for_status()
    requests.delete(f"{url}/v1/dev/stats", timeout=5).raise_for_status()
    yield url
    requests.delete(f"{url}/v1/dev/faults", timeout=5)


def mint_response(base: str, **options: object) -> requests.Response:
    response = requests.post(f"{base}/v1/dev/teams-tokens", json=options, timeout=5)
    if response.status_code == 201:
        secret(response.json()["token"])
    return response


def mint(base: str, **options: object) -> str:
    response = mint_response(base, **options)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def key_set(base: str, tenant: str = TENANT) -> jwt.PyJWKSet:
    response = requests.get(f"{base}/{tenant}/discovery/v2.0/keys", timeout=5)
    assert response.status_code == 200
    return jwt.PyJWKSet.from_dict(response.json())


def kids(base: str) -> set[str]:
    return {key.key_id for key in key_set(base).keys if key.key_id}


def verify(base: str, token: str, *, issuer: str = V2_ISSUER, audience: str = CLIENT_ID) -> dict[str, Any]:
    """As an API would: the key the header's kid names in the JWKS, RS256 only, with iss, aud, exp and nbf."""
    signing_key = key_set(base)[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token, signing_key.key, algorithms=["RS256"], audience=audience, issuer=issuer, leeway=0
    )
    return claims


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def only_key(base: str) -> Any:
    (key,) = key_set(base).keys
    return key.key


# --- discovery and keys --------------------------------------------------------------------------------------------


def test_openid_configuration_names_microsofts_issuer_and_the_stand_ins_keys(base: str) -> None:
    response = requests.get(f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    config = response.json()
    assert config["issuer"] == V2_ISSUER  # Microsoft's real issuer, never the stand-in's URL
    assert config["jwks_uri"] == f"{base}/{TENANT}/discovery/v2.0/keys"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["token_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/authorize"
    assert requests.get(config["jwks_uri"], timeout=5).json()["keys"]


def test_common_openid_configuration_carries_microsofts_template_issuer(base: str) -> None:
    config = requests.get(f"{base}/common/v2.0/.well-known/openid-configuration", timeout=5).json()
    assert config["issuer"] == "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert config["jwks_uri"] == f"{base}/common/discovery/v2.0/keys"


def test_keys_are_public_rsa_signing_jwks_cached_like_entra(base: str) -> None:
    response = requests.get(f"{base}/{TENANT}/discovery/v2.0/keys", timeout=5)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=86400, private"
    assert response.headers["Content-Type"].startswith("application/json")
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "use", "kid", "x5t", "n", "e"}  # public parts only: no "d", "p", "q"
    assert (key["kty"], key["use"], key["e"]) == ("RSA", "sig", "AQAB")
    assert key["x5t"] == key["kid"]
    assert jwt.PyJWK(key).key.key_size == 2048


def test_every_tenant_guid_and_common_get_the_same_keys(base: str) -> None:
    # Entra's signing keys are common to all tenants.
    answers = [
        requests.get(f"{base}/{tenant}/discovery/v2.0/keys", timeout=5).json()
        for tenant in (TENANT, OTHER_TENANT, "common", TENANT.upper())
    ]
    assert all(answer == answers[0] for answer in answers)


@pytest.mark.parametrize("tenant", ["contoso.example", "not-a-guid", TENANT.replace("-", ""), "organizations"])
@pytest.mark.parametrize("path", ["discovery/v2.0/keys", "v2.0/.well-known/openid-configuration"])
def test_a_tenant_that_is_not_a_guid_is_404_json(base: str, tenant: str, path: str) -> None:
    response = requests.get(f"{base}/{tenant}/{path}", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# --- minted tokens -------------------------------------------------------------------------------------------------


def test_default_token_verifies_against_the_jwks_with_a_teams_tab_tokens_claims(base: str) -> None:
    response = mint_response(base)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()["token"]
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("RS256", "JWT")
    assert header["kid"] in kids(base)
    claims = verify(base, token)
    assert claims["iss"] == V2_ISSUER
    assert claims["aud"] == CLIENT_ID
    assert claims["scp"] == "access_as_user"
    assert claims["azp"] == TEAMS_CLIENT_APP_ID == "1fec8e78-bce4-4aaf-ab1b-5451cc387264"
    assert claims["azpacr"] == "0"
    assert claims["tid"] == TENANT
    assert claims["ver"] == "2.0"
    assert (claims["name"], claims["preferred_username"]) == (FIRST_USER["name"], FIRST_USER["userPrincipalName"])
    users = requests.get(f"{base}/v1/dev/teams-users", timeout=5).json()["users"]
    assert claims["oid"] == users[0]["id"]
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 3600
    assert response.json()["expiresAt"] == claims["exp"]
    for name in ("aio", "rh", "sub", "uti"):
        assert isinstance(claims[name], str), name
        assert claims[name], name
    assert not {"appid", "appidacr", "upn", "unique_name"} & set(claims)


def test_random_claims_differ_per_token_and_sub_is_stable_per_user_and_audience(base: str) -> None:
    first, second = (unverified(mint(base))[1] for _ in range(2))
    assert first["sub"] == second["sub"]
    assert (first["aio"], first["uti"], first["rh"]) != (second["aio"], second["uti"], second["rh"])
    users = requests.get(f"{base}/v1/dev/teams-users", timeout=5).json()["users"]
    other_user = unverified(mint(base, userId=users[1]["id"]))[1]
    other_app = unverified(mint(base, audience="api://another.example"))[1]
    assert len({first["sub"], other_user["sub"], other_app["sub"], first["oid"]}) == 4


def test_teams_users_lists_the_demo_tenant_client_and_users(base: str) -> None:
    response = requests.get(f"{base}/v1/dev/teams-users", timeout=5)
    assert response.status_code == 200
    listing = response.json()
    assert (listing["tenantId"], listing["clientId"]) == (TENANT, CLIENT_ID)
    assert [user["name"] for user in listing["users"]] == ["Asha Rao", "Bruno Costa", "Chen Wei"]
    for user in listing["users"]:
        assert set(user) == {"id", "name", "userPrincipalName"}
        claims = verify(base, mint(base, userId=user["id"]))
        assert (claims["oid"], claims["name"], claims["preferred_username"]) == (
            user["id"],
            user["name"],
            user["userPrincipalName"],
        )


def test_v1_form_has_the_sts_issuer_appid_and_upn(base: str) -> None:
    token = mint(base, issuerForm="v1")
    claims = verify(base, token, issuer=f"https://sts.windows.net/{TENANT}/")
    assert claims["ver"] == "1.0"
    assert (claims["appid"], claims["appidacr"]) == (TEAMS_CLIENT_APP_ID, "0")
    assert claims["upn"] == claims["unique_name"] == FIRST_USER["userPrincipalName"]
    assert not {"azp", "azpacr", "preferred_username"} & set(claims)
    assert unverified(mint(base, issuerForm="v1", azp="11111111-2222-4333-8444-555555555555"))[1]["appid"] == (
        "11111111-2222-4333-8444-555555555555"
    )


def test_another_tenant_is_in_tid_and_iss_and_still_signed_by_the_jwks(base: str) -> None:
    claims = verify(
        base, mint(base, tenantId=OTHER_TENANT), issuer=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    )
    assert claims["tid"] == OTHER_TENANT
    assert unverified(mint(base, tenantId=OTHER_TENANT.upper()))[1]["tid"] == OTHER_TENANT  # GUIDs in lower case


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"audience": "api://app.example/6a2b9c4d"}, {"aud": "api://app.example/6a2b9c4d"}),
        ({"scope": "Files.Read access_as_user"}, {"scp": "Files.Read access_as_user"}),
        ({"azp": "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"}, {"azp": "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"}),
        (
            {"issuer": "https://login.microsoftonline.com/evil/v2.0"},
            {"iss": "https://login.microsoftonline.com/evil/v2.0"},
        ),
        ({"userId": None, "scope": None, "ttlSeconds": None}, {"scp": "access_as_user"}),  # null: the default
    ],
)
def test_each_claim_option_sets_exactly_its_claim(base: str, options: dict[str, Any], expected: dict[str, Any]) -> None:
    default = unverified(mint(base))[1]
    claims = unverified(mint(base, **options))[1]
    changing = {"iat", "nbf", "exp", "aio", "rh", "uti", "sub"}  # per token (sub: per audience)
    assert {name: claims[name] for name in expected} == expected
    others = set(default) - changing - set(expected)
    assert {name: claims.get(name) for name in others} == {name: default[name] for name in others}


def test_an_empty_scope_leaves_scp_out(base: str) -> None:
    assert "scp" not in unverified(mint(base, scope=""))[1]


def test_a_literal_issuer_fails_an_issuer_check(base: str) -> None:
    token = mint(base, issuer="https://sts.windows.net/someone-else/")
    with pytest.raises(jwt.InvalidIssuerError):
        verify(base, token)


def test_an_audience_fails_an_audience_check(base: str) -> None:
    with pytest.raises(jwt.InvalidAudienceError):
        verify(base, mint(base, audience="api://someone-else"))


def test_negative_ttl_mints_an_expired_token(base: str) -> None:
    response = mint_response(base, ttlSeconds=-120)
    token = response.json()["token"]
    claims = unverified(token)[1]
    assert claims["exp"] == claims["iat"] - 120 == response.json()["expiresAt"]
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(base, token)


def test_not_before_mints_a_token_not_yet_valid(base: str) -> None:
    token = mint(base, notBeforeSeconds=600)
    claims = unverified(token)[1]
    assert claims["nbf"] == claims["iat"] + 600
    assert claims["exp"] == claims["iat"] + 3600
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(base, token)


@pytest.mark.parametrize("seconds", [-86400, 0, 86400])
def test_ttl_limits_are_inclusive(base: str, seconds: int) -> None:
    claims = unverified(mint(base, ttlSeconds=seconds, notBeforeSeconds=-seconds))[1]
    assert (claims["exp"] - claims["iat"], claims["nbf"] - claims["iat"]) == (seconds, -seconds)


def test_hs256_is_an_hmac_token_under_the_jwks_kid(base: str) -> None:
    token = mint(base, alg="HS256")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert header["kid"] in kids(base)  # the published kid: an API must refuse the alg, not just a missing key
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(base, token)


def test_none_is_an_unsigned_token_under_the_jwks_kid(base: str) -> None:
    token = mint(base, alg="none")
    assert token.endswith(".")  # no signature at all
    header, claims = unverified(token)
    assert header["alg"] == "none"
    assert header["kid"] in kids(base)
    assert claims["aud"] == CLIENT_ID
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(base, token)


def test_an_unknown_kid_is_still_signed_by_the_current_key(base: str) -> None:
    token = mint(base, kid="not-a-published-kid")
    assert jwt.get_unverified_header(token)["kid"] == "not-a-published-kid"
    assert "not-a-published-kid" not in kids(base)
    with pytest.raises(KeyError):
        verify(base, token)  # an API looking the kid up finds nothing
    assert jwt.decode(token, only_key(base), algorithms=["RS256"], audience=CLIENT_ID)["tid"] == TENANT


def test_an_outside_signer_uses_a_key_the_jwks_never_holds(base: str) -> None:
    token = mint(base, signer="outside")
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid not in kids(base)
    with pytest.raises(KeyError):
        verify(base, token)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, only_key(base), algorithms=["RS256"], audience=CLIENT_ID)
    assert jwt.get_unverified_header(mint(base, signer="outside"))["kid"] == kid  # one outside key per process


def test_an_outside_signer_under_the_published_kid_fails_the_signature(base: str) -> None:
    (published,) = kids(base)
    token = mint(base, signer="outside", kid=published)
    assert jwt.get_unverified_header(token)["kid"] == published
    with pytest.raises(jwt.InvalidSignatureError):
        verify(base, token)


# --- rotation ------------------------------------------------------------------------------------------------------


def test_rotation_drops_the_old_key_and_new_tokens_verify_against_the_new_set(base: str) -> None:
    before = mint(base)
    (old_kid,) = kids(base)
    response = requests.post(f"{base}/v1/dev/teams-keys/rotate", timeout=5)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    rotation = response.json()
    assert rotation["retired"] == old_kid
    assert rotation["kid"] != old_kid
    assert kids(base) == {rotation["kid"]}
    with pytest.raises(KeyError):
        verify(base, before)  # its key has left the JWKS
    after = mint(base)
    assert jwt.get_unverified_header(after)["kid"] == rotation["kid"]
    assert verify(base, after)["tid"] == TENANT


# --- faults and stats ----------------------------------------------------------------------------------------------


def test_entra_down_drops_discovery_and_keys_while_users_me_works(base: str) -> None:
    kaizala = requests.post(f"{base}/v1/dev/tokens", timeout=5).json()["token"]
    secret(kaizala)
    assert requests.put(f"{base}/v1/dev/faults", json={"entra_down": True}, timeout=5).json()["entra_down"] is True
    for path in (
        f"{TENANT}/discovery/v2.0/keys",
        "common/discovery/v2.0/keys",
        f"{TENANT}/v2.0/.well-known/openid-configuration",
    ):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/{path}", timeout=5)
    assert requests.get(f"{base}/v1/users/me", headers={"accessToken": kaizala}, timeout=5).status_code == 200
    mint(base)  # the dev endpoints stay up: a test can still mint while Entra is "down"
    assert requests.delete(f"{base}/v1/dev/faults", timeout=5).json()["entra_down"] is False
    assert requests.get(f"{base}/{TENANT}/discovery/v2.0/keys", timeout=5).status_code == 200


@pytest.mark.parametrize("fault", [{"drop_rate": 1}, {"error_rate": 1}, {"hang_rate": 1, "hang_seconds": 30}])
def test_kaizala_faults_never_reach_the_entra_endpoints(base: str, fault: dict[str, float]) -> None:
    requests.put(f"{base}/v1/dev/faults", json=fault, timeout=5).raise_for_status()
    assert requests.get(f"{base}/{TENANT}/discovery/v2.0/keys", timeout=5).status_code == 200
    assert requests.get(f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=5).status_code == 200


@pytest.mark.parametrize("value", ["yes", 1, 0, None])
def test_entra_down_must_be_true_or_false(base: str, value: object) -> None:
    response = requests.put(f"{base}/v1/dev/faults", json={"entra_down": value}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert requests.get(f"{base}/v1/dev/faults", timeout=5).json()["entra_down"] is False


def test_stats_count_key_and_discovery_fetches(base: str) -> None:
    for _ in range(3):
        requests.get(f"{base}/{TENANT}/discovery/v2.0/keys", timeout=5)
    requests.get(f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=5)
    mint(base)  # minting and listing are not fetches
    requests.get(f"{base}/v1/dev/teams-users", timeout=5)
    assert requests.get(f"{base}/v1/dev/stats", timeout=5).json() == {"entra_keys": 3, "entra_openid": 1}
    requests.put(f"{base}/v1/dev/faults", json={"entra_down": True}, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/{TENANT}/discovery/v2.0/keys", timeout=5)
    stats = requests.get(f"{base}/v1/dev/stats", timeout=5).json()
    assert (stats["entra_keys"], stats["fault_entra_down"]) == (4, 1)


# --- the dev endpoints ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"text"',
        {"userId": 5},
        {"tenantId": "contoso.example"},
        {"tenantId": 7},
        {"audience": ""},
        {"audience": ["a"]},
        {"scope": 5},
        {"azp": ""},
        {"ttlSeconds": "60"},
        {"ttlSeconds": True},
        {"ttlSeconds": 1.5},
        {"ttlSeconds": 86401},
        {"ttlSeconds": -86401},
        {"notBeforeSeconds": 86401},
        {"notBeforeSeconds": "0"},
        {"issuerForm": "v3"},
        {"issuer": ""},
        {"alg": "RS512"},
        {"alg": "None"},
        {"kid": 7},
        {"signer": "somebody"},
        {"ttl": 60},  # a misspelt option is refused, not ignored
    ],
)
def test_bad_bodies_are_400_json(base: str, body: bytes | dict[str, Any]) -> None:
    url = f"{base}/v1/dev/teams-tokens"
    if isinstance(body, bytes):
        response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
    else:
        response = requests.post(url, json=body, timeout=5)
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"]


def test_an_unknown_user_is_404(base: str) -> None:
    response = mint_response(base, userId="a1b2c3d4-0001-4000-8000-000000000001")  # a Kaizala user, not a Teams one
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_user"


def test_an_empty_body_mints_the_default_token(base: str) -> None:
    response = requests.post(f"{base}/v1/dev/teams-tokens", timeout=5)
    assert response.status_code == 201
    assert verify(base, secret(response.json()["token"]))["aud"] == CLIENT_ID


DEV_REQUESTS = [
    ("POST", "/v1/dev/teams-tokens"),
    ("POST", "/v1/dev/teams-keys/rotate"),
    ("GET", "/v1/dev/teams-users"),
]


def test_dev_endpoints_refuse_other_host_names(base: str) -> None:
    before = kids(base)
    for method, path in DEV_REQUESTS:
        response = requests.request(method, f"{base}{path}", json={}, headers={"Host": "login.example"}, timeout=5)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "loopback_only"
    assert kids(base) == before  # the refused rotation rotated nothing


def test_discovery_answers_any_host_name(base: str) -> None:
    # Not dev endpoints: they are public in Entra too.
    headers = {"Host": "login.example"}
    assert requests.get(f"{base}/{TENANT}/discovery/v2.0/keys", headers=headers, timeout=5).status_code == 200
    config = requests.get(f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", headers=headers, timeout=5)
    assert config.json()["jwks_uri"] == f"http://login.example/{TENANT}/discovery/v2.0/keys"


@pytest.mark.parametrize(("method", "path"), DEV_REQUESTS)
def test_dev_endpoints_refuse_a_peer_on_another_machine(method: str, path: str) -> None:
    # In-process, to set the peer's address: a client on the network can write "Host: localhost" itself.
    client = Client(KaizalaStandIn())
    for peer, status in (("192.0.2.7", 403), ("127.0.0.1", 201 if method == "POST" and "tokens" in path else 200)):
        response = client.open(
            path, method=method, json={}, headers={"Host": "localhost:7072"}, environ_base={"REMOTE_ADDR": peer}
        )
        assert response.status_code == status, peer
        if status == 403:
            assert response.get_json()["error"] == "loopback_only"
        elif "token" in response.get_json():
            secret(response.get_json()["token"])
