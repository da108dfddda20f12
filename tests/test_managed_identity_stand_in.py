"""The managed identity stand-in over real HTTP: the App Service protocol (2019-08-01) as Azure Functions serves it,
its refusals, and its tokens (RS256 JWTs for the right object id and audience, reused for half their life)."""

import time
from collections.abc import Iterator

import jwt
import pytest
import requests

from devserver.managed_identity import Identity, ManagedIdentityStandIn
from tests.helpers import secret

SYSTEM = Identity.make("system-assigned")
USER_ASSIGNED = Identity.make("fleet-cache")
RESOURCE = "https://redis.azure.com"


@pytest.fixture
def stand_in() -> Iterator[ManagedIdentityStandIn]:
    issued: list[tuple[str, str]] = []
    stand_in = ManagedIdentityStandIn(
        system_assigned=SYSTEM,
        user_assigned=[USER_ASSIGNED],
        token_seconds=60,
        on_issue=lambda object_id, token: issued.append((object_id, secret(token))),
    )
    stand_in.issued_to_hook = issued  # type: ignore[attr-defined]
    with stand_in.serving():
        yield stand_in


def ask(stand_in: ManagedIdentityStandIn, header: str | None = "", **params: str) -> requests.Response:
    headers = {} if header is None else {"X-IDENTITY-HEADER": header or stand_in.secret}
    query = {"api-version": "2019-08-01", "resource": RESOURCE, **params}
    response = requests.get(stand_in.endpoint, params=query, headers=headers, timeout=5)
    if response.ok:
        secret(response.json()["access_token"])
    return response


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_a_token_for_the_system_assigned_identity(stand_in: ManagedIdentityStandIn) -> None:
    response = ask(stand_in)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["resource"] == RESOURCE
    assert body["token_type"] == "Bearer"
    assert body["client_id"] == SYSTEM.client_id
    token = body["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    payload = claims(token)
    assert payload["oid"] == payload["sub"] == SYSTEM.object_id
    assert payload["aud"] == RESOURCE
    assert payload["appid"] == SYSTEM.client_id
    assert payload["iss"] == f"https://sts.windows.net/{stand_in.tenant_id}/"
    assert int(body["expires_on"]) == payload["exp"]
    assert 59 <= int(body["expires_on"]) - time.time() <= 60
    assert stand_in.issued_to_hook == [(SYSTEM.object_id, token)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("selector", "value"),
    [
        ("client_id", USER_ASSIGNED.client_id),
        ("mi_res_id", USER_ASSIGNED.resource_id),
        ("principal_id", USER_ASSIGNED.object_id),
        ("object_id", USER_ASSIGNED.object_id.upper()),
    ],
)
def test_a_selector_picks_the_user_assigned_identity(
    stand_in: ManagedIdentityStandIn, selector: str, value: str
) -> None:
    response = ask(stand_in, **{selector: value})
    assert response.status_code == 200
    assert claims(response.json()["access_token"])["oid"] == USER_ASSIGNED.object_id


def test_the_same_token_is_answered_for_half_its_life_then_a_new_one(stand_in: ManagedIdentityStandIn) -> None:
    stand_in.token_seconds = 2
    first = ask(stand_in).json()["access_token"]
    assert ask(stand_in).json()["access_token"] == first
    time.sleep(1.1)
    assert ask(stand_in).json()["access_token"] != first
    assert stand_in.stats["issued"] == 2
    assert stand_in.stats["reused"] == 1


@pytest.mark.parametrize(
    ("header", "params", "status"),
    [
        (None, {}, 401),
        ("wrong", {}, 403),
        ("", {"api-version": "2017-09-01"}, 400),
        ("", {"resource": ""}, 400),
        ("", {"client_id": "00000000-0000-0000-0000-000000000000"}, 400),
        ("", {"client_id": USER_ASSIGNED.client_id, "mi_res_id": USER_ASSIGNED.resource_id}, 400),
    ],
)
def test_refusals_are_json_with_a_status_and_message(
    stand_in: ManagedIdentityStandIn, header: str | None, params: dict[str, str], status: int
) -> None:
    response = ask(stand_in, header, **params)
    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert response.json()["message"]
    assert stand_in.stats["issued"] == 0


def test_failing_and_latency(stand_in: ManagedIdentityStandIn) -> None:
    stand_in.failing = 500
    assert ask(stand_in).status_code == 500
    stand_in.failing = None
    stand_in.latency_ms = 200
    started = time.monotonic()
    assert ask(stand_in).status_code == 200
    assert time.monotonic() - started >= 0.2
