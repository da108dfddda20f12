"""Each fault the stand-in injects, through `python -m devserver`, maps to its documented answer."""

import subprocess
import sys
import time

import pytest
import requests

from devserver.launch import launched
from tests.devserver_process import ROOT, devserver, devserver_env
from tests.helpers import secret

TIMEOUT = 0.5


@pytest.fixture(scope="module")
def server():
    with devserver(env={"KAIZALA_TIMEOUT_SECONDS": str(TIMEOUT), "TOKEN_CACHE_SECONDS": "300"}) as running:
        yield running


@pytest.fixture
def faults(server):
    url = f"{server.kaizala}/v1/dev/faults"

    def inject(**settings: object) -> None:
        requests.put(url, json=settings, timeout=5).raise_for_status()

    yield inject
    requests.delete(url, timeout=5)


@pytest.mark.parametrize(
    ("fault", "status", "error", "retry_after"),
    [
        ({"error_rate": 1, "error_status": 500}, 503, "identity_unavailable", "5"),
        ({"error_rate": 1, "error_status": 503}, 503, "identity_unavailable", "5"),
        ({"error_rate": 1, "error_status": 429}, 503, "identity_unavailable", "2"),
        ({"malformed_rate": 1}, 502, "identity_bad_response", None),
        ({"missing_id_rate": 1}, 502, "identity_bad_response", None),
        ({"truncate_rate": 1}, 503, "identity_unavailable", "5"),
        ({"drop_rate": 1}, 503, "identity_unavailable", "5"),
        ({"hang_rate": 1, "hang_seconds": 2}, 503, "identity_unavailable", "5"),
    ],
)
def test_fault_maps_to_its_documented_answer(server, faults, fault, status, error, retry_after) -> None:
    token = server.mint()
    faults(**fault)
    started = time.monotonic()
    response = requests.get(f"{server.api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    elapsed = time.monotonic() - started
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert response.headers.get("Retry-After") == retry_after
    assert elapsed < 2 * TIMEOUT + 1.0  # bounded, even when Kaizala hangs
    if fault.get("error_status") == 429:
        time.sleep(int(retry_after or 0) + 0.1)  # the 429 holds every miss back until its Retry-After has passed


def test_latency_and_jitter_delay_but_do_not_fail(server, faults) -> None:
    faults(latency_ms=150, jitter_ms=50)
    token = server.mint()
    started = time.monotonic()
    response = requests.get(f"{server.api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    assert 0.09 < time.monotonic() - started < TIMEOUT + 0.5


def test_failures_are_not_cached_so_recovery_is_immediate(server, faults) -> None:
    token = server.mint()
    faults(error_rate=1, error_status=503)
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{server.api}/api/ValidateToken", headers=headers, timeout=10).status_code == 503
    requests.delete(f"{server.kaizala}/v1/dev/faults", timeout=5)
    assert requests.get(f"{server.api}/api/ValidateToken", headers=headers, timeout=10).status_code == 200


def test_stand_in_runs_alone_with_fault_flags() -> None:
    with launched("devserver.kaizala", ["--port", "0", "--error-rate", "1", "--error-status", "429"]) as stand_in:
        base = stand_in.kaizala
        minted = requests.post(f"{base}/v1/dev/tokens", timeout=5)
        assert minted.status_code == 201
        token = secret(minted.json()["token"])
        answer = requests.get(f"{base}/v1/users/me", headers={"accessToken": token}, timeout=5)
        assert answer.status_code == 429
        assert answer.headers["Retry-After"] == "2"
        requests.delete(f"{base}/v1/dev/faults", timeout=5)
        assert requests.get(f"{base}/v1/users/me", headers={"accessToken": token}, timeout=5).status_code == 200
        assert stand_in.stop() == 0


def test_bad_fault_flags_stop_startup() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devserver.kaizala", "--port", "0", "--error-rate", "0.8", "--drop-rate", "0.8"],
        cwd=ROOT,
        env=devserver_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "add up to more than 1" in result.stderr
