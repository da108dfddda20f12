"""The local tools (`python -m devserver`, `python -m devserver.kaizala`) as a newcomer and a network see them:
dev endpoints only for loopback, listening on all interfaces, busy ports, a start-up settings check."""

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from werkzeug.test import Client

from devserver.kaizala import KaizalaStandIn
from devserver.launch import launched
from tests.devserver_process import ROOT, DevServer, devserver, devserver_env
from tests.helpers import secret


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with devserver() as running:
        yield running


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def raw_request(port: int, head: str) -> tuple[int, dict[str, object]]:
    """One HTTP request written by hand (to send any Host header, or none); the status and the JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(body or b"{}")


# --- 8. the dev endpoints answer only requests addressed to a loopback host name ---------------------------------


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "localhost", "LocalHost"])
def test_dev_endpoints_answer_loopback_host_names(server: DevServer, host: str) -> None:
    port = port_of(server.kaizala)
    response = requests.post(
        f"{server.kaizala}/v1/dev/tokens", json={}, headers={"Host": host.format(port=port)}, timeout=5
    )
    assert response.status_code == 201, response.text
    secret(response.json()["token"])


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:{port}",  # DNS rebinding: a web page's own name, resolved to 127.0.0.1
        "evil.example",
        "localhost.evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "0.0.0.0:{port}",
        "192.0.2.2:{port}",
        "localhost:{port}@evil.example",
    ],
)
def test_dev_endpoints_refuse_other_host_names(server: DevServer, host: str) -> None:
    port = port_of(server.kaizala)
    headers = {"Host": host.format(port=port)}
    before = requests.get(f"{server.kaizala}/v1/dev/faults", timeout=5).json()
    for method, path in [
        ("POST", "/v1/dev/tokens"),
        ("GET", "/v1/dev/users"),
        ("PUT", "/v1/dev/faults"),
        ("DELETE", "/v1/dev/faults"),
        ("GET", "/v1/dev/stats"),
        ("GET", "/v1/dev/pictures/a1b2c3d4-0001-4000-8000-000000000001.svg"),
    ]:
        body = {"error_rate": 1} if method == "PUT" else {}
        response = requests.request(method, f"{server.kaizala}{path}", json=body, headers=headers, timeout=5)
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error"] == "loopback_only"
        assert "localhost" in response.json()["message"]
    assert requests.get(f"{server.kaizala}/v1/dev/faults", timeout=5).json() == before  # the PUT changed nothing


def test_dev_endpoints_refuse_a_request_without_host(server: DevServer) -> None:
    status, body = raw_request(port_of(server.kaizala), "POST /v1/dev/tokens HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert status == 403
    assert body["error"] == "loopback_only"


def test_identity_endpoint_and_card_still_answer_any_host(server: DevServer) -> None:
    # Not dev endpoints: users/me needs a token, and the card is static.
    headers = {"Host": "kaizala.example"}
    assert requests.get(f"{server.kaizala}/v1/users/me", headers=headers, timeout=5).status_code == 401
    assert requests.get(f"{server.kaizala}/card/app.css", headers=headers, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("peer", "status"),
    [
        ("192.0.2.7", 403),
        ("fd00::7", 403),
        ("::ffff:192.0.2.7", 403),
        ("", 403),
        ("127.0.0.1", 201),
        ("::1", 201),
        ("::ffff:127.0.0.1", 201),  # an IPv4 client of a dual-stack `--host ::`
    ],
)
def test_dev_endpoints_refuse_a_peer_on_another_machine(peer: str, status: int) -> None:
    # A client on the network can write "Host: localhost" itself: the peer's address must be loopback too.
    client = Client(KaizalaStandIn())
    response = client.post(
        "/v1/dev/tokens", json={}, headers={"Host": "localhost:7072"}, environ_base={"REMOTE_ADDR": peer}
    )
    assert response.status_code == status
    if status == 201:
        secret(response.get_json()["token"])
    else:
        assert response.get_json()["error"] == "loopback_only"


def test_all_interfaces_keeps_the_app_working_and_warns() -> None:
    with devserver("--host", "0.0.0.0") as running:  # noqa: S104 - the point of the test
        output = running.output()
        assert "WARNING" in output
        assert "/v1/dev/" in output
        assert "loopback" in output
        # The banner and the ready line show URLs that work from this machine, never http://0.0.0.0.
        assert running.api.startswith("http://127.0.0.1:")
        assert running.kaizala.startswith("http://127.0.0.1:")
        assert "http://0.0.0.0" not in output
        token = running.mint()
        response = requests.get(
            f"{running.api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert response.status_code == 200, response.text
        assert response.json()["pictureUrl"].startswith(f"{running.kaizala}/v1/dev/pictures/")
        config = requests.get(f"{running.kaizala}/card/config.js", timeout=5).text
        assert json.dumps(running.api) in config


def outside_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing), or None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never contacted
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_one_outside_address_keeps_the_app_working_and_refuses_outside_peers() -> None:
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with devserver("--host", address) as running:
        assert "WARNING" in running.output()
        assert running.api == f"http://{address}:{port_of(running.api)}"
        # The stand-in listens on loopback too: the functions call it there, and the dev endpoints answer there.
        assert running.kaizala.startswith("http://127.0.0.1:")
        response = requests.get(
            f"{running.api}/api/ValidateToken", headers={"Authorization": f"Bearer {running.mint()}"}, timeout=5
        )
        assert response.status_code == 200, response.text
        # A peer on the outside address (here this machine itself, so not loopback) is refused, whatever its Host.
        outside = requests.post(
            f"http://{address}:{port_of(running.kaizala)}/v1/dev/tokens", headers={"Host": "localhost"}, timeout=5
        )
        assert outside.status_code == 403
        assert outside.json()["error"] == "loopback_only"


def test_stand_in_alone_on_all_interfaces_warns() -> None:
    with launched("devserver.kaizala", ["--host", "0.0.0.0", "--port", "0"]) as running:  # noqa: S104
        output = running.output()
        assert "WARNING" in output
        assert "/v1/dev/" in output
        assert running.kaizala.startswith("http://127.0.0.1:")
        assert requests.post(f"{running.kaizala}/v1/dev/tokens", timeout=5).status_code == 201


def test_loopback_host_does_not_warn(server: DevServer) -> None:
    assert "WARNING" not in server.output()


# --- 10. busy ports name the server and the way out -------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=ROOT,
        env=devserver_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_busy_function_host_port_says_which_and_how(busy_port: int) -> None:
    result = run_to_exit("devserver", "--port", str(busy_port), "--kaizala-port", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"function host: port {busy_port} is in use" in result.stderr
    assert "make run PORT=" in result.stderr
    assert "--port" in result.stderr


def test_busy_stand_in_port_says_which_and_how(busy_port: int) -> None:
    result = run_to_exit("devserver", "--port", "0", "--kaizala-port", str(busy_port))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"Kaizala stand-in: port {busy_port} is in use" in result.stderr
    assert "make run KAIZALA_PORT=" in result.stderr
    assert "--kaizala-port" in result.stderr


def test_busy_port_for_the_stand_in_alone(busy_port: int) -> None:
    result = run_to_exit("devserver.kaizala", "--port", str(busy_port))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"Kaizala stand-in: port {busy_port} is in use" in result.stderr
    assert "--port" in result.stderr


def test_port_out_of_range_is_a_usage_error() -> None:
    result = run_to_exit("devserver", "--port", "70000")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "0 to 65535" in result.stderr


# --- 10. the settings are checked once at start-up --------------------------------------------------------------


def test_startup_names_every_missing_or_malformed_setting() -> None:
    env = {"KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": " ", "TOKEN_CACHE_SECONDS": "abc", "KAIZALA_TIMEOUT_SECONDS": "fast"}
    with devserver(env=env) as running:
        warnings = [line for line in running.output().splitlines() if "WARNING" in line]
        named = " ".join(warnings)
        for setting in env:
            assert setting in named, warnings
        # Requests still fail closed, as before.
        response = requests.get(f"{running.api}/api/ValidateToken", timeout=5)
        assert response.status_code == 500
        assert response.json()["error"] == "server_misconfigured"


def test_startup_settings_check_sees_the_repointed_stand_in(server: DevServer) -> None:
    # The example settings name the stand-in's default port; the check runs after it is repointed: no warning.
    assert "KAIZALA_IDENTITY_URL" not in server.output()
