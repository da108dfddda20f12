"""A Teams tab's token end to end over HTTP: `python -m devserver` (the host, with the TEAMS_ settings it sets)
against the Entra ID stand-in, whose tokens differ from a valid one as each test asks."""

from collections.abc import Iterator

import pytest
import requests

from tests.devserver_process import DevServer, devserver
from tests.helpers import secret

TENANT = "8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70"  # the stand-in's demo tenant
OTHER_TENANT = "0b9d7e5c-3a1f-4c28-b6e4-9f2a7c1d5e83"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with devserver() as running:
        yield running


def teams_token(server: DevServer, **options: object) -> str:
    response = requests.post(f"{server.kaizala}/v1/dev/teams-tokens", json=options, timeout=5)
    assert response.status_code == 201, response.text
    return secret(response.json()["token"])


def call(server: DevServer, token: str, function: str = "ValidateToken") -> requests.Response:
    return requests.get(f"{server.api}/api/{function}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def stats(server: DevServer) -> dict[str, int]:
    return requests.get(f"{server.kaizala}/v1/dev/stats", timeout=5).json()


def test_a_tab_token_from_the_stand_in_gets_the_teams_identity_and_the_catalog(server: DevServer) -> None:
    users = requests.get(f"{server.kaizala}/v1/dev/teams-users", timeout=5).json()
    before = stats(server).get("users_me", 0)
    token = teams_token(server)
    body = call(server, token).json()
    assert body["provider"] == "teams"
    assert body["id"] == users["users"][0]["id"]
    assert body["tenantId"] == users["tenantId"]
    assert call(server, token, "ProtectedApi").json()["products"]
    assert stats(server).get("users_me", 0) == before  # Kaizala was never asked
    v1 = teams_token(server, issuerForm="v1")
    assert call(server, v1).status_code == 200


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"tenantId": OTHER_TENANT}, 403),
        ({"azp": "bc59ab01-8403-45c6-8796-ac3ef710b3e3"}, 403),
        ({"audience": "11111111-2222-4333-8444-555555555555"}, 401),
        ({"scope": "User.Read"}, 401),
        ({"ttlSeconds": -600}, 401),
        ({"notBeforeSeconds": 600}, 401),
        ({"alg": "HS256"}, 401),
        ({"alg": "none"}, 401),
        ({"signer": "outside"}, 401),
        ({"tenantId": OTHER_TENANT, "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0"}, 401),  # tid
        ({"issuer": f"https://login.microsoftonline.com/{TENANT}/"}, 401),  # not one of Entra's two forms
    ],
)
def test_a_wrong_tab_token_is_refused_over_http(server: DevServer, options: dict[str, object], status: int) -> None:
    response = call(server, teams_token(server, **options))
    assert response.status_code == status
    assert response.json()["error"] == ("forbidden" if status == 403 else "invalid_token")


def test_entra_unreachable_before_any_key_is_fetched_is_a_503_then_recovers() -> None:
    with devserver("--entra-down") as fresh:
        token = teams_token(fresh)
        response = call(fresh, token)
        assert response.status_code == 503
        assert response.json()["error"] == "identity_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        requests.put(f"{fresh.kaizala}/v1/dev/faults", json={"entra_down": False}, timeout=5).raise_for_status()
        assert wait_until_ok(fresh, token)


def wait_until_ok(server: DevServer, token: str, seconds: float = 8) -> bool:
    import time

    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if call(server, token).status_code == 200:
            return True
        time.sleep(0.25)
    return False
