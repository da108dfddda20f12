"""`python -m devserver` end to end over real sockets: identity, products, errors, CORS, routing, shutdown."""

import base64
import http.client
import json
import signal
import socket
import time

import pytest
import requests

from devserver import worker_host
from tests.devserver_process import ROOT, DevServer, devserver
from tests.helpers import secret

STAND_IN_ORIGIN_HEADER = "Origin"
TEAMS_TENANT = "8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70"  # devserver/demo_users.json's, which the host trusts by default
TEAMS_CLIENT = "6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d"
OTHER_CLIENT = "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a"


@pytest.fixture(scope="module")
def server() -> DevServer:
    with devserver() as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_banner_lists_functions_curl_lines_and_the_card_preview(server) -> None:
    out = server.stdout_path.read_text()
    assert f"ValidateToken: [GET,POST] {server.api}/api/ValidateToken" in out
    assert f"ProtectedApi: [GET] {server.api}/api/ProtectedApi" in out
    assert f"Card preview:      {server.kaizala}/card/" in out
    assert 'curl -s -H "Authorization: Bearer $TOKEN"' in out
    token = out.split("export TOKEN=", 1)[1].split()[0]
    assert requests.get(f"{server.api}/api/ValidateToken", headers=bearer(token), timeout=5).status_code == 200


def test_banner_shows_the_entra_stand_in_and_the_teams_settings_the_host_got(server) -> None:
    out = server.stdout_path.read_text()
    assert f"Entra ID stand-in: {server.kaizala}/{TEAMS_TENANT}/discovery/v2.0/keys" in out
    assert (
        f"TEAMS_AUTHORITY={server.kaizala} TEAMS_CLIENT_ID={TEAMS_CLIENT} TEAMS_ALLOWED_TENANT_IDS={TEAMS_TENANT}"
        in out
    )
    assert f"  curl -s -X POST {server.kaizala}/v1/dev/teams-tokens" in out
    minted = requests.post(f"{server.kaizala}/v1/dev/teams-tokens", timeout=5)
    assert minted.status_code == 201
    secret(minted.json()["token"])
    assert requests.get(f"{server.kaizala}/{TEAMS_TENANT}/discovery/v2.0/keys", timeout=5).json()["keys"]


def test_teams_settings_already_set_are_kept_and_the_default_authority_follows_the_stand_in() -> None:
    env = {
        "TEAMS_CLIENT_ID": OTHER_CLIENT,
        "TEAMS_ALLOWED_TENANT_IDS": " ",
        "TEAMS_AUTHORITY": "http://127.0.0.1:7072/",
    }
    with devserver(env=env) as running:
        expected = f"TEAMS_AUTHORITY={running.kaizala} TEAMS_CLIENT_ID={OTHER_CLIENT} TEAMS_ALLOWED_TENANT_IDS="
        assert f"{expected}{TEAMS_TENANT}\n" in running.stdout_path.read_text()  # blank counts as unset
    with devserver(env={"TEAMS_AUTHORITY": "http://127.0.0.1:9"}) as running:  # another authority: kept
        assert "TEAMS_AUTHORITY=http://127.0.0.1:9 " in running.stdout_path.read_text()


def test_identity_end_to_end(server) -> None:
    demo_users = requests.get(f"{server.kaizala}/v1/dev/users", timeout=5).json()
    second = demo_users["users"][1]
    response = requests.get(
        f"{server.api}/api/ValidateToken", headers=bearer(server.mint(userId=second["id"])), timeout=5
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    identity = response.json()
    assert identity["id"] == second["id"]
    assert identity["name"] == second["name"]
    assert identity["actionPackageId"] == demo_users["actionPackageId"]
    assert identity["phoneNumber"].startswith("+")
    assert requests.get(identity["pictureUrl"], timeout=5).headers["Content-Type"].startswith("image/svg+xml")


def test_post_body_token_end_to_end(server) -> None:
    response = requests.post(f"{server.api}/api/ValidateToken", json={"token": server.mint()}, timeout=5)
    assert response.status_code == 200


def test_products_end_to_end_with_etag(server) -> None:
    token = server.mint()
    response = requests.get(
        f"{server.api}/api/ProtectedApi", params={"category": "tea"}, headers=bearer(token), timeout=5
    )
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["products"]) > 0
    assert {p["category"] for p in body["products"]} == {"Tea"}
    again = requests.get(
        f"{server.api}/api/ProtectedApi",
        params={"category": "tea"},
        headers={**bearer(token), "If-None-Match": response.headers["ETag"]},
        timeout=5,
    )
    assert again.status_code == 304


def test_missing_forged_and_expired_tokens_are_401(server) -> None:
    assert requests.get(f"{server.api}/api/ValidateToken", timeout=5).json()["error"] == "missing_token"
    header, payload, _signature = server.mint().split(".")
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(b'x' * 32).rstrip(b'=').decode()}"
    response = requests.get(f"{server.api}/api/ValidateToken", headers=bearer(forged), timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    expiring = server.mint(ttlSeconds=1)
    time.sleep(1.2)
    response = requests.get(f"{server.api}/api/ProtectedApi", headers=bearer(expiring), timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_token_for_another_card_is_403(server) -> None:
    token = server.mint(actionPackageId="com.fabrikam.unknown")
    response = requests.get(f"{server.api}/api/ProtectedApi", headers=bearer(token), timeout=5)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_cors_preflight_allows_the_card_preview_origin(server) -> None:
    response = requests.options(
        f"{server.api}/api/ProtectedApi",
        headers={
            "Origin": server.kaizala,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=5,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == server.kaizala
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Allow-Methods"] == "GET"


def test_cors_refuses_other_origins(server) -> None:
    preflight = requests.options(
        f"{server.api}/api/ProtectedApi",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        timeout=5,
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    actual = requests.get(f"{server.api}/api/ValidateToken", headers={"Origin": "https://evil.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in actual.headers


def test_cors_headers_on_answers_expose_retry_after_and_etag(server) -> None:
    response = requests.get(
        f"{server.api}/api/ProtectedApi", headers={**bearer(server.mint()), "Origin": server.kaizala}, timeout=5
    )
    assert response.headers["Access-Control-Allow-Origin"] == server.kaizala
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Retry-After"} <= exposed
    assert "Origin" in response.headers["Vary"]


def test_unknown_route_is_404_and_wrong_method_is_405(server) -> None:
    missing = requests.get(f"{server.api}/api/Nope", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = requests.post(f"{server.api}/api/ProtectedApi", timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"].startswith("GET")


def test_access_log_never_prints_a_query_string(server) -> None:
    marker = "querysecret" + "x" * 8
    requests.get(f"{server.api}/api/ProtectedApi?token={marker}", timeout=5)
    requests.get(f"{server.kaizala}/v1/users/me?accessToken={marker}", timeout=5)
    time.sleep(0.2)
    output = server.output()
    assert '"GET /api/ProtectedApi" 400' in output
    assert marker not in output


def test_minted_tokens_never_reach_the_output(server) -> None:
    token = server.mint()
    requests.get(f"{server.api}/api/ProtectedApi", headers=bearer(token), timeout=5)
    requests.get(f"{server.api}/api/ValidateToken", headers=bearer(token + "x"), timeout=5)
    time.sleep(0.2)
    assert token not in server.output()


def test_sigterm_stops_both_servers_cleanly() -> None:
    with devserver() as running:
        ports = [int(url.rsplit(":", 1)[1]) for url in (running.api, running.kaizala)]
        assert running.stop() == 0
        assert "Traceback" not in running.output()
        for port in ports:
            with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
                pass


def test_ctrl_c_stops_cleanly() -> None:
    with devserver() as running:
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(10) == 0
        assert "Traceback" not in running.output()


def test_stand_in_default_url_is_repointed_to_the_actual_port() -> None:
    # The example settings name port 7072; the stand-in runs on a free port here, and calls still succeed.
    with devserver(env={"KAIZALA_IDENTITY_URL": "http://127.0.0.1:7072/v1/users/me"}) as running:
        assert not running.kaizala.endswith(":7072")
        response = requests.get(f"{running.api}/api/ValidateToken", headers=bearer(running.mint()), timeout=5)
        assert response.status_code == 200


def test_environment_wins_over_the_settings_file() -> None:
    with devserver(env={"KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "com.only.this"}) as running:
        response = requests.get(f"{running.api}/api/ValidateToken", headers=bearer(running.mint()), timeout=5)
        assert response.status_code == 403


def test_invalid_function_json_stops_startup(tmp_path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    (tmp_path / "Broken").mkdir()
    (tmp_path / "Broken" / "function.json").write_text("{not json")
    with pytest.raises(RuntimeError) as failure, devserver("--root", str(tmp_path)):
        pass
    assert "Broken/function.json" in str(failure.value)
    assert "not valid JSON" in str(failure.value)


def test_no_access_log_keeps_errors_only() -> None:
    with devserver("--no-access-log") as running:
        requests.get(f"{running.api}/api/ValidateToken", headers=bearer(running.mint()), timeout=5)
        time.sleep(0.2)
        assert '"GET /api/ValidateToken"' not in running.output()


def test_banner_names_the_invocation_path_and_worker_logs_reach_the_console(server) -> None:
    through_worker = worker_host.available()  # Python 3.13+: every function runs through the worker library
    assert ("invoked through Microsoft's worker library" in server.stdout_path.read_text()) == through_worker
    if through_worker:
        requests.get(f"{server.api}/api/ValidateToken", timeout=5)
        time.sleep(0.2)
        assert "Function name: ValidateToken, Function Type: sync" in server.output()  # the library's own log line


@pytest.mark.skipif(not worker_host.available(), reason="the worker library runs on Python 3.13+ only")
def test_a_function_the_worker_would_not_load_stops_startup_with_its_message(tmp_path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    (tmp_path / "Exposed").mkdir()
    (tmp_path / "Exposed" / "__init__.py").write_text("def main(req, identity):\n    return None\n")
    (tmp_path / "Exposed" / "function.json").write_text((ROOT / "ProtectedApi" / "function.json").read_text())
    with pytest.raises(RuntimeError) as failure, devserver("--root", str(tmp_path)):
        pass
    assert "Exposed/function.json" in str(failure.value)
    assert "declared in Python but not in function.json: {'identity'}" in str(failure.value)


def test_a_chunked_body_never_reaches_the_function(server) -> None:
    """The Functions host passes a body only with a Content-Length above 0 (its ToRpcHttp)."""
    host, port = server.api.removeprefix("http://").split(":")
    body = json.dumps({"token": server.mint()}).encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request(
        "POST",
        "/api/ValidateToken",
        body=iter([body]),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert (response.status, answer["error"]) == (401, "missing_token")
    assert requests.post(f"{server.api}/api/ValidateToken", data=body, timeout=5).status_code == 200  # with a length
