"""Hostile bodies on the stand-in's dev endpoints must be answered as JSON 4xx, never a 500.

In-process (werkzeug's test client, loopback peer and Host), so nothing leaves the machine.
"""

import json

import pytest
from werkzeug.test import Client

from devserver.kaizala import KaizalaStandIn

LOOPBACK = {"Host": "127.0.0.1:7072"}
PEER = {"REMOTE_ADDR": "127.0.0.1"}
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def client() -> Client:
    return Client(KaizalaStandIn())


def answer(client: Client, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
    response = client.open(
        path,
        method=method,
        data=body,
        headers={**LOOPBACK, "Content-Type": "application/json"},
        environ_base=PEER,
    )
    return response.status_code, response.mimetype, response.get_data()


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/dev/teams-tokens"), ("POST", "/v1/dev/tokens"), ("PUT", "/v1/dev/faults")],
)
@pytest.mark.parametrize(
    "body",
    [DEEP, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b'{"userId": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"],
    ids=["deep-list", "deep-object", "deep-field"],
)
def test_deeply_nested_json_is_a_400_not_a_500(client: Client, method: str, path: str, body: bytes) -> None:
    # Today: json.loads raises RecursionError, which json_object_body (and on_faults) do not catch: werkzeug's
    # HTML 500. Fix: catch RecursionError next to ValueError in devserver/wsgi.py:json_object_body and in on_faults.
    status, mimetype, data = answer(client, method, path, body)
    assert status == 400, (status, data[:80])
    assert mimetype == "application/json"
    assert json.loads(data)["error"] == "invalid_request"


@pytest.mark.parametrize("field", ["audience"])
def test_a_lone_surrogate_in_a_teams_token_field_is_a_400_not_a_500(client: Client, field: str) -> None:
    # JSON lets "\ud800" through json.loads; the stand-in then encodes `aud` for the pairwise `sub`
    # (entra.py:_subject, f"...|{audience}".encode()) and raises UnicodeEncodeError: a 500.
    # Fix: _non_empty_text (and the other string checks) refuse strings that do not encode as UTF-8.
    status, mimetype, data = answer(client, "POST", "/v1/dev/teams-tokens", b'{"%s": "\\ud800"}' % field.encode())
    assert status == 400, (status, data[:80])
    assert mimetype == "application/json"


@pytest.mark.parametrize("faults", [{"latency_ms": 1e308}, {"hang_rate": 1, "hang_seconds": 1e308}])
def test_a_fault_users_me_cannot_honour_is_refused_when_set(client: Client, faults: dict[str, float]) -> None:
    # Faults.validated accepts any non-negative float, so users/me then calls time.sleep(1e305) -> OverflowError
    # (an HTML 500 from users/me, or a crash in-process). Fix: bound latency/jitter/hang (say 0..600 s) and refuse
    # non-finite numbers in Faults.validated.
    status, _mimetype, data = answer(client, "PUT", "/v1/dev/faults", json.dumps(faults).encode())
    assert status == 400, (status, data[:120])


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_get_faults_always_answers_strict_json(client: Client, value: str) -> None:
    # PUT {"latency_ms": NaN} is accepted today, and GET /v1/dev/faults then answers `NaN`, which is not JSON
    # (a strict parser, e.g. a browser's JSON.parse, fails). Fix: refuse non-finite numbers in Faults.validated.
    answer(client, "PUT", "/v1/dev/faults", b'{"latency_ms": %s}' % value.encode())
    status, _mimetype, data = answer(client, "GET", "/v1/dev/faults", b"")
    assert status == 200

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize(
    ("origin", "status"),
    [("https://evil.example", 403), ("null", 403), ("http://127.0.0.1:7072", 200), ("http://localhost:9", 200)],
)
def test_a_page_from_another_site_cannot_use_the_dev_endpoints(client: Client, origin: str, status: int) -> None:
    # A "simple" cross-origin POST needs no preflight: any site open in the developer's browser could rotate the
    # stand-in's keys or change its faults. Browsers name the page's origin; only this machine's pages may.
    response = client.open(
        "/v1/dev/teams-keys/rotate",
        method="POST",
        headers={**LOOPBACK, "Origin": origin},
        environ_base=PEER,
    )
    assert response.status_code == status
    if status == 403:
        assert json.loads(response.get_data())["error"] == "loopback_only"
