"""`python -m devserver --telemetry`: the functions export over OTLP to the stand-in, whose /telemetry/ page and
/v1/dev/telemetry figures show real requests; the host hands the functions a trace parent in the caller's trace
(both invocation paths: direct on 3.11, through the worker library on 3.13). Dev endpoints stay loopback-only."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.devserver_process import DevServer, devserver
from tests.helpers import wait_for

CALLER_TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with devserver("--telemetry", "--no-access-log") as running:
        yield running


def figures(server: DevServer) -> dict[str, Any]:
    answer = requests.get(f"{server.kaizala}/v1/dev/telemetry", timeout=5)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def test_the_page_shows_the_requests_sent(server: DevServer) -> None:
    requests.delete(f"{server.kaizala}/v1/dev/telemetry", timeout=5)
    token = server.mint()
    headers = {"Authorization": f"Bearer {token}", "traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}
    for _ in range(4):
        assert requests.get(f"{server.api}/api/ValidateToken", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{server.api}/api/ValidateToken", timeout=10).status_code == 401

    def arrived() -> bool:
        counts = figures(server)["requests"]
        return counts.get("kaizala/ok/hit") == 3 and counts.get("none/missing_token/none") == 1

    assert wait_for(arrived, 15), figures(server)  # exported every second (OTEL_METRIC_EXPORT_INTERVAL=1000)
    shown = figures(server)
    assert shown["requests"]["kaizala/ok/upstream"] == 1
    assert shown["hit_ratio"] == pytest.approx(3 / 5)
    assert wait_for(lambda: figures(server)["upstream"]["kaizala users/me"] is not None, 10)
    page = requests.get(f"{server.kaizala}/telemetry/", timeout=5)
    assert page.status_code == 200
    assert "kaizala_auth telemetry" in page.text


def test_the_host_passes_the_callers_trace_on(server: DevServer) -> None:
    """As the Functions host does: its invocation is a span in the caller's trace, the functions' spans its children."""
    token = server.mint()
    caller_span = "00f067aa0ba902b7"
    headers = {"Authorization": f"Bearer {token}", "traceparent": f"00-{CALLER_TRACE}-{caller_span}-01"}
    assert requests.get(f"{server.api}/api/ValidateToken", headers=headers, timeout=10).status_code == 200

    def in_the_callers_trace() -> list[dict[str, Any]]:
        spans = figures(server)["spans"]
        return [span for span in spans if span["name"] == "kaizala users/me" and span["trace_id"] == CALLER_TRACE]

    assert wait_for(lambda: bool(in_the_callers_trace()), 15), figures(server)["spans"]
    for span in in_the_callers_trace():
        assert span["parent_span_id"] not in ("", caller_span)  # the host's own invocation span
    assert wait_for(lambda: "token checked with kaizala" in " ".join(figures(server)["logs"]), 15)


def test_telemetry_endpoints_are_loopback_only(server: DevServer) -> None:
    for path in ("/telemetry/", "/v1/dev/telemetry", "/v1/metrics"):
        answer = requests.get(f"{server.kaizala}{path}", headers={"Host": "kaizala.example.com"}, timeout=5)
        assert answer.status_code == 403, path
        assert answer.json()["error"] == "loopback_only"


def test_without_the_flag_there_is_no_page() -> None:
    with devserver("--no-access-log") as plain:
        answer = requests.get(f"{plain.kaizala}/telemetry/", timeout=5)
        assert answer.status_code == 404
        assert "--telemetry" in answer.json()["message"]
