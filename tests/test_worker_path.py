"""The documented contract through the local host's invocation paths, in-process (werkzeug's test client).

"direct" calls `main` (every Python); "worker" runs the functions through Microsoft's worker library
(`azure-functions-runtime-v1`, Python 3.13+ only). Both get the request as the Functions host converts it, and on
3.13 both must answer every case identically (status, headers, body).
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests_mock
from werkzeug.test import Client

import ProtectedApi
from devserver import worker_host
from devserver.conversion import HostRequest, from_http_response, to_http_request
from devserver.functions_host import FunctionApp, FunctionAppError, load_app
from shared.authenticator import root
from tests.conftest import MOCK_URL
from tests.helpers import OTHER_CARD_ID, SECRETS, identity_payload, make_jwt

ROOT = Path(__file__).resolve().parent.parent
WORKER = worker_host.available()
needs_worker = pytest.mark.skipif(not WORKER, reason="the worker library runs on Python 3.13+ only")
MODES = ["direct", pytest.param("worker", marks=needs_worker)]


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, FunctionApp]]:
    loaded = {"direct": load_app(ROOT, invoke="direct")}
    if WORKER:
        loaded["worker"] = load_app(ROOT, invoke="worker")
    yield loaded
    for app in loaded.values():
        app.close()


@dataclass
class Case:
    name: str
    status: int
    error: str | None = None
    method: str = "GET"
    path: str = "/api/ValidateToken"
    token: str | None = "fresh"  # "fresh": a new valid JWT; None: no Authorization header
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    upstream: dict[str, Any] = field(default_factory=lambda: {"json": identity_payload()})
    env: dict[str, str | None] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None


def _retry_after_7(response: Any) -> None:
    assert response.headers["Retry-After"] == "7"


def _bearer_challenge(response: Any) -> None:
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="kaizala"'


CASES = [
    Case("bearer", 200),
    Case("accessToken header", 200, token=None, headers={"accessToken": "fresh"}),
    Case("body token", 200, method="POST", token=None, body=b'{"token": "fresh"}'),
    Case("products", 200, path="/api/ProtectedApi?category=tea&limit=2"),
    Case("route case-insensitive", 200, path="/API/protectedapi"),
    Case("token in query", 400, "invalid_request", path="/api/ValidateToken?access_token=abc"),
    Case("unknown query parameter", 400, "invalid_request", path="/api/ValidateToken?verbose=1"),
    Case("unknown ProtectedApi parameter", 400, "invalid_request", path="/api/ProtectedApi?categroy=tea"),
    Case("malformed body", 400, "invalid_request", method="POST", token=None, body=b"{"),
    Case("null body token", 400, "invalid_request", method="POST", token=None, body=b'{"token": null}'),
    Case("missing token", 401, "missing_token", token=None, check=_bearer_challenge),
    Case("bad shape", 401, "invalid_token", token="not a token"),
    Case("expired", 401, "invalid_token", token="expired"),
    Case("kaizala rejects", 401, "invalid_token", upstream={"status_code": 401, "json": {}}),
    Case("other card", 403, "forbidden", upstream={"json": identity_payload(card=OTHER_CARD_ID)}),
    Case("no allowlist", 500, "server_misconfigured", env={"KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": None}),
    Case("no id", 502, "identity_bad_response", upstream={"json": {"name": "x"}}),
    Case("unavailable", 503, "identity_unavailable", upstream={"status_code": 429, "headers": {"Retry-After": "7"}}),
    Case("unknown route", 404, "not_found", path="/api/Nope"),
    Case("wrong method", 405, "method_not_allowed", method="DELETE"),
]


def run(app: FunctionApp, case: Case, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    token = {"fresh": make_jwt(), "expired": make_jwt(exp=1_000_000)}.get(case.token or "", case.token)
    headers = {name: make_jwt() if value == "fresh" else value for name, value in case.headers.items()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = case.body.replace(b'"fresh"', json.dumps(make_jwt()).encode())
    root().clear()
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, **case.upstream)
        return Client(app).open(case.path, method=case.method, headers=headers, data=body)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_documented_contract(apps, mode: str, case: Case, monkeypatch) -> None:
    response = run(apps[mode], case, monkeypatch)
    assert response.status_code == case.status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    if case.error:
        assert body["error"] == case.error
        assert response.headers["Cache-Control"] == "no-store"
    if case.check:
        case.check(response)


@pytest.mark.parametrize("mode", MODES)
def test_etag_and_304_keep_the_json_content_type(apps, mode: str, monkeypatch) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        client = Client(apps[mode])
        first = client.get("/api/ProtectedApi?category=coffee", headers={"Authorization": f"Bearer {token}"})
        etag = first.headers["ETag"]
        again = client.get(
            "/api/ProtectedApi?category=coffee", headers={"Authorization": f"Bearer {token}", "If-None-Match": etag}
        )
    assert first.status_code == 200
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    # werkzeug drops a 304's content type on the wire; what the function hands the host is checked below.
    assert again.headers.get("Content-Type") in (None, first.headers["Content-Type"])


@pytest.mark.parametrize("mode", MODES)
def test_304_as_handed_to_the_host_carries_the_json_content_type(apps, mode: str) -> None:
    """What the worker sends the Functions host for a 304: a cache merging these headers into the stored answer
    must not relabel the JSON (the worker's default would be text/plain)."""
    token = make_jwt()
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        request = HostRequest(
            "GET", "http://localhost/api/ProtectedApi", {"authorization": f"Bearer {token}"}, {}, {}, None
        )
        if mode == "worker":
            app = apps["worker"]
            first = app.worker.invoke("ProtectedApi", request)
            etag = dict(first.headers)["ETag"]
            request = replace(request, headers={**request.headers, "if-none-match": etag})
            again = app.worker.invoke("ProtectedApi", request)
        else:
            first = from_http_response(ProtectedApi.main(to_http_request(request)))
            etag = dict(first.headers)["ETag"]
            request = replace(request, headers={**request.headers, "if-none-match": etag})
            again = from_http_response(ProtectedApi.main(to_http_request(request)))
    assert (first.status, again.status) == (200, 304)
    assert {n.lower(): v for n, v in again.headers}["content-type"] == "application/json"
    assert {n.lower(): v for n, v in first.headers}["content-type"] == "application/json"


@needs_worker
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_both_paths_answer_identically(apps, case: Case, monkeypatch) -> None:
    def answer(mode: str) -> tuple[int, dict[str, str], Any]:
        response = run(apps[mode], case, monkeypatch)
        headers = {name.lower(): value for name, value in response.headers.items() if name.lower() != "date"}
        body = response.get_json()
        if isinstance(body, dict) and "id" in body:
            body["phoneNumber"] = "(compared apart)"
        return response.status_code, headers, body

    assert answer("direct") == answer("worker")


def test_internal_error_through_each_path(apps, monkeypatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(root().kaizala_client(), "fetch_identity", boom)
    for mode in apps:
        root().clear()
        response = Client(apps[mode]).get("/api/ValidateToken", headers={"Authorization": f"Bearer {make_jwt()}"})
        assert (response.status_code, response.get_json()["error"]) == (500, "internal_error"), mode


@needs_worker
def test_every_function_folder_loads_through_the_worker(apps) -> None:
    folders = sorted(path.parent.name for path in ROOT.glob("*/function.json"))
    assert sorted(function.name for function in apps["worker"].functions) == folders
    assert all(function.main is None for function in apps["worker"].functions)  # the worker imported them


@needs_worker
def test_one_worker_per_process(apps) -> None:
    """The library's thread pool and registry are module globals: a second worker would silently replace them."""
    with pytest.raises(FunctionAppError, match="already running"):
        load_app(ROOT, invoke="worker")
    assert Client(apps["worker"]).get("/api/ValidateToken").status_code == 401  # the first one still works


@needs_worker
def test_no_token_or_phone_number_in_the_worker_rpc_logs(apps, monkeypatch) -> None:
    rpc_logs = apps["worker"].worker.rpc_logs  # type: ignore[union-attr]
    before = len(rpc_logs.messages)
    for case in CASES:
        run(apps["worker"], case, monkeypatch)
    messages = [message.message for message in list(rpc_logs.messages)[before:]]
    assert len(messages) >= len(CASES)  # at least the worker's own line per invocation
    leaked = [message for message in messages for secret in SECRETS if secret in message]
    assert not leaked, leaked[:3]
