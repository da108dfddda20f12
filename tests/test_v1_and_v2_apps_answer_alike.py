"""The v1 app (function.json folders) and the v2 example app (examples/v2: `shared.blueprint` registered on a
FunctionApp) answer the same request the same way: status, body and every header but Date.

Each pair runs through one invocation path: "direct" (every Python: v1 calls `main`, v2 the functions
`get_functions()` indexed) and "worker" (Python 3.13+: `azure-functions-runtime-v1` and `azure-functions-runtime`,
Microsoft's worker libraries). Kaizala's users/me and Entra ID's signing keys are real servers on 127.0.0.1. Each
case also states the status the contract gives it, so two apps equally wrong do not pass.
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

import shared
from devserver import worker_host
from devserver.functions_host import FunctionApp, load_app
from tests.entra import CLIENT_ID, TENANT, Entra
from tests.helpers import OTHER_CARD_ID, Reply, Upstream, identity_payload, make_jwt, origin, upstream_server

ROOT = Path(__file__).resolve().parent.parent
V2_ROOT = ROOT / "examples" / "v2"
WORKER = worker_host.available() and worker_host.available(worker_host.LIBRARY_V2)
needs_worker = pytest.mark.skipif(not WORKER, reason="the worker library runs on Python 3.13+ only")
MODES = ["direct", pytest.param("worker", marks=needs_worker)]
UNCOMPARED_HEADERS = {"date"}


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[tuple[str, str], FunctionApp]]:
    modes = ["direct", "worker"] if WORKER else ["direct"]
    loaded: dict[tuple[str, str], FunctionApp] = {}
    try:
        for mode in modes:
            loaded["v1", mode] = load_app(ROOT, invoke=mode)
            loaded["v2", mode] = load_app(V2_ROOT, invoke=mode)
        yield loaded
    finally:
        for app in loaded.values():
            app.close()


# users/me's answer for each token a case sends (by default: 401, the answer to a token Kaizala does not know)
REPLIES: dict[str, Reply] = {}


@pytest.fixture(scope="module")
def kaizala_server() -> Iterator[Upstream]:
    with upstream_server(lambda _n, token: REPLIES.get(token or "", Reply(status=401, body={}))) as up:
        yield up


@pytest.fixture(autouse=True)
def both_providers_on(monkeypatch: pytest.MonkeyPatch, kaizala_server: Upstream, jwks_server: Upstream) -> None:
    """Both providers on, against a users/me of this module's own and the JWKS server of tests/conftest.py."""
    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala,teams")
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", kaizala_server.url)
    monkeypatch.setenv("TEAMS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("TEAMS_ALLOWED_TENANT_IDS", TENANT)
    monkeypatch.setenv("TEAMS_AUTHORITY", origin(jwks_server))


@dataclass
class Case:
    name: str
    status: int  # what the contract says; both apps must also agree on everything else
    method: str = "GET"
    path: str = "/api/ValidateToken"
    token: str = "kaizala"  # kaizala (a fresh token users/me vouches for), expired, teams, unknown, or the token itself
    send: str = "bearer"  # bearer, accessToken (the header), body ({"token": ...}) or none
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    kaizala: Reply | None = None  # users/me's answer to this case's token (default: the allowed card's user)
    env: dict[str, str | None] = field(default_factory=dict)
    revalidate: bool = False  # send If-None-Match with the ETag the same request got first


PRODUCTS = "/api/ProtectedApi"
CASES = [
    Case("valid", 200),
    Case("valid, accessToken header", 200, send="accessToken"),
    Case("valid, body token", 200, method="POST", send="body"),
    Case("missing", 401, send="none"),
    Case("missing, empty body", 401, method="POST", send="none", body=b"{}"),
    Case("expired", 401, token="expired"),
    Case("not a token", 401, token="not a token"),
    Case("Kaizala does not know it", 401, token="unknown"),
    Case("other card (action package not allowed)", 403, kaizala=Reply(body=identity_payload(card=OTHER_CARD_ID))),
    Case("Teams token", 200, token="teams"),
    Case("Teams token, products", 200, path=f"{PRODUCTS}?category=tea", token="teams"),
    Case("empty ?token= never arrives", 200, path="/api/ValidateToken?token="),
    Case("?token= with a value", 400, path="/api/ValidateToken?token=abc"),
    Case("?access_token= with a value, no header", 400, path="/api/ValidateToken?access_token=abc", send="none"),
    Case("a query parameter ValidateToken does not take", 400, path="/api/ValidateToken?verbose=1"),
    Case("null body token", 400, method="POST", send="none", body=b'{"token": null}'),
    Case("products", 200, path=f"{PRODUCTS}?category=tea&limit=2"),
    Case("products, anonymous", 401, path=f"{PRODUCTS}?category=tea", send="none"),
    Case("empty ?category= is no category", 200, path=f"{PRODUCTS}?category="),
    Case("a repeated category arrives joined", 400, path=f"{PRODUCTS}?category=tea&category=coffee"),
    Case("a repeated q arrives joined", 200, path=f"{PRODUCTS}?q=a&q=b"),
    Case("names are case-sensitive", 400, path=f"{PRODUCTS}?Category=tea"),
    Case("a typo", 400, path=f"{PRODUCTS}?categroy=tea"),
    Case("limit out of range", 400, path=f"{PRODUCTS}?limit=0"),
    Case("304 with If-None-Match", 304, path=f"{PRODUCTS}?category=coffee", revalidate=True),
    Case("routes ignore case", 200, path="/API/protectedapi"),
    Case("POST to ProtectedApi", 405, method="POST", path=PRODUCTS),
    Case("DELETE to ValidateToken", 405, method="DELETE"),
    Case("Kaizala unavailable", 503, kaizala=Reply(status=429, body={}, headers={"Retry-After": "7"})),
    Case("misconfigured", 500, env={"KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": None}),
]


def token_for(case: Case, entra: Entra) -> str:
    """A token of the case's kind, new for each app (they are compared by what they answer, not by the token)."""
    if case.token == "teams":
        return entra.token()
    if case.token == "expired":
        return make_jwt(exp=1_000_000)
    if case.token in ("kaizala", "unknown"):
        token = make_jwt()
        if case.token == "kaizala":
            REPLIES[token] = case.kaizala or Reply(body=identity_payload("v1-and-v2-user"))
        return token
    return case.token


def answer(app: FunctionApp, case: Case, entra: Entra, monkeypatch: pytest.MonkeyPatch) -> Any:
    """(status, headers but Date, body) for the case; the phone number is compared by its digest (never shown)."""
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    headers, body = dict(case.headers), case.body
    if case.send != "none":
        token = token_for(case, entra)
        if case.send == "bearer":
            headers["Authorization"] = f"Bearer {token}"
        elif case.send == "accessToken":
            headers["accessToken"] = token
        else:
            body = json.dumps({"token": token}).encode()
    shared.clear_cache()
    client = Client(app)
    if case.revalidate:
        first = client.open(case.path, method=case.method, headers=headers)
        assert first.status_code == 200, first.get_data(as_text=True)
        headers["If-None-Match"] = first.headers["ETag"]
    response = client.open(case.path, method=case.method, headers=headers, data=body)
    payload = response.get_json(silent=True) if response.get_data() else None
    if isinstance(payload, dict) and isinstance(payload.get("phoneNumber"), str):
        payload["phoneNumber"] = hashlib.sha256(payload["phoneNumber"].encode()).hexdigest()
    kept = sorted((name.lower(), value) for name, value in response.headers.items())
    return response.status_code, [(name, value) for name, value in kept if name not in UNCOMPARED_HEADERS], payload


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_v1_and_v2_answer_the_same(apps, mode: str, case: Case, entra: Entra, monkeypatch) -> None:
    v1 = answer(apps["v1", mode], case, entra, monkeypatch)
    v2 = answer(apps["v2", mode], case, entra, monkeypatch)
    assert v1[0] == case.status, v1
    assert v2 == v1


@pytest.mark.parametrize("mode", MODES)
def test_both_apps_serve_the_two_functions_on_the_same_routes_and_methods(apps, mode: str) -> None:
    def shape(app: FunctionApp) -> dict[str, tuple[str, tuple[str, ...]]]:
        return {f.name: (f.route, f.methods) for f in app.functions if f.name in ("ValidateToken", "ProtectedApi")}

    assert shape(apps["v1", mode]) == shape(apps["v2", mode])
    assert shape(apps["v2", mode]) == {
        "ValidateToken": ("api/ValidateToken", ("GET", "POST")),
        "ProtectedApi": ("api/ProtectedApi", ("GET",)),
    }
