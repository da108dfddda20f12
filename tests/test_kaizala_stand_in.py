"""The Kaizala stand-in in-process: tokens, users/me, minting rules, faults, and the card preview."""

import json
import time

import jwt
import pytest
from werkzeug.test import Client

from devserver.kaizala import Faults, KaizalaStandIn
from tests.helpers import secret


@pytest.fixture
def stand_in() -> KaizalaStandIn:
    return KaizalaStandIn(api_url="http://127.0.0.1:7999")


@pytest.fixture
def client(stand_in) -> Client:
    return Client(stand_in)


def mint(client: Client, **body) -> str:
    response = client.post("/v1/dev/tokens", json=body)
    assert response.status_code == 201
    return secret(response.json["token"])


def test_mint_defaults_to_first_demo_user_and_demo_card(client, stand_in) -> None:
    response = client.post("/v1/dev/tokens")
    assert response.status_code == 201
    token = secret(response.json["token"])
    assert abs(response.json["expiresAt"] - (time.time() + 1800)) < 5
    me = client.get("/v1/users/me", headers={"accessToken": token}).json
    assert set(me) == {"id", "name", "phoneNumber", "pictureUrl", "actionPackageId"}
    assert me["id"] == stand_in.default_user
    assert me["actionPackageId"] == stand_in.action_package_id == "com.contoso.productpicker"
    assert len(stand_in.users) >= 2


def test_tokens_are_hs256_jwts_with_user_card_iat_exp(client) -> None:
    token = mint(client, ttlSeconds=60)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert {"sub", "apid", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 60


def test_mint_for_another_user_and_card(client, stand_in) -> None:
    other = list(stand_in.users)[1]
    token = mint(client, userId=other, actionPackageId="com.example.card")
    me = client.get("/v1/users/me", headers={"accessToken": token}).json
    assert (me["id"], me["actionPackageId"]) == (other, "com.example.card")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"userId": "nobody"}, 404),
        ({"ttlSeconds": 0}, 400),
        ({"ttlSeconds": "60"}, 400),
        ({"ttlSeconds": 10**9}, 400),
        ({"userId": 5}, 400),
        ({"actionPackageId": ""}, 400),
        ([], 400),
    ],
)
def test_mint_rejects_bad_requests(client, body, status) -> None:
    response = client.post("/v1/dev/tokens", json=body)
    assert response.status_code == status
    assert "error" in response.json


def test_users_me_refuses_missing_malformed_forged_and_expired(client, stand_in) -> None:
    assert client.get("/v1/users/me").status_code == 401
    assert client.get("/v1/users/me", headers={"accessToken": "garbage"}).status_code == 401
    forged = secret(
        jwt.encode(
            {"sub": stand_in.default_user, "apid": "x", "iat": 1, "exp": 2**40},
            "a-guessed-secret-of-32-bytes-or-more",
            "HS256",
        )
    )
    assert client.get("/v1/users/me", headers={"accessToken": forged}).status_code == 401
    other_process = KaizalaStandIn()
    foreign, _ = other_process.mint()
    assert client.get("/v1/users/me", headers={"accessToken": secret(foreign)}).status_code == 401
    expired, _ = stand_in.mint(ttl=1)
    time.sleep(1.1)
    response = client.get("/v1/users/me", headers={"accessToken": secret(expired)})
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


def test_fault_admin_endpoint(client) -> None:
    assert client.get("/v1/dev/faults").json == json.loads(json.dumps(Faults().__dict__))
    changed = client.put("/v1/dev/faults", json={"error_rate": 1.0, "error_status": 429})
    assert changed.status_code == 200
    response = client.get("/v1/users/me")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert client.put("/v1/dev/faults", json={"error_rate": 0.7, "drop_rate": 0.7}).status_code == 400
    assert client.put("/v1/dev/faults", json={"nonsense": 1}).status_code == 400
    assert client.delete("/v1/dev/faults").json["error_rate"] == 0


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ({"malformed_rate": 1}, lambda r: r.status_code == 200 and r.get_data().startswith(b'{"id": "half')),
        ({"missing_id_rate": 1}, lambda r: r.status_code == 200 and "id" not in r.json),
        ({"error_rate": 1, "error_status": 500}, lambda r: r.status_code == 500),
    ],
)
def test_faults_change_users_me(client, fault, check) -> None:
    token = mint(client)
    client.put("/v1/dev/faults", json=fault)
    assert check(client.get("/v1/users/me", headers={"accessToken": token}))


def test_stats_count_calls(client) -> None:
    client.get("/v1/users/me")
    client.get("/v1/users/me")
    assert client.get("/v1/dev/stats").json["users_me"] == 2
    client.delete("/v1/dev/stats")
    assert client.get("/v1/dev/stats").json == {}


def test_card_preview_is_served_with_dev_sdk_and_config(client) -> None:
    index = client.get("/card/")
    assert index.status_code == 200
    assert b'<select id="product"' in index.get_data()
    assert b"getIntegerationServiceTokenAsync" in client.get("/card/KASClient.js").get_data()
    config = client.get("/card/config.js").get_data().decode()
    assert '"http://127.0.0.1:7999"' in config
    assert client.get("/card/../devserver/kaizala.py").status_code == 404
    assert client.get("/").status_code in (301, 302)


def test_fault_draw_respects_rates() -> None:
    import random

    faults = Faults(error_rate=0.25, drop_rate=0.25).validated()
    rng = random.Random(7)
    draws = [faults.draw(rng) for _ in range(4000)]
    assert 800 < draws.count("error") < 1200
    assert 800 < draws.count("drop") < 1200
    assert 1800 < draws.count(None) < 2200
