"""A collector that is down (connections refused) or hanging (reads the export, never answers): requests answer as
they do with telemetry off, within 10 ms at p99, and nothing fails. Exports are attempted all along (every 50 ms),
on the SDK's threads."""

import statistics
import time
from collections.abc import Iterator

import pytest

from shared import telemetry
from tests.helpers import Reply, Upstream, identity_payload, make_jwt, upstream_server
from tests.otlp_collector import collector, down_url
from tests.telemetry_helpers import otlp_env, validate

MISSES = 40
HITS = 400


@pytest.fixture
def kaizala_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload("faults-user-9c"))) as upstream:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", upstream.url)
        yield upstream


def p99_of_a_run() -> float:
    """p99 (ms) of MISSES first requests for fresh tokens, then HITS cached requests over them; every one 200."""
    tokens = [make_jwt() for _ in range(MISSES)]
    took = []
    for number in range(MISSES + HITS):
        started = time.perf_counter()
        assert validate(tokens[number % MISSES]).status_code == 200
        took.append((time.perf_counter() - started) * 1000)
    return statistics.quantiles(took, n=100, method="inclusive")[98]


def fast_exports(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    otlp_env(
        monkeypatch,
        url,
        OTEL_METRIC_EXPORT_INTERVAL="50",
        OTEL_METRIC_EXPORT_TIMEOUT="1000",
        OTEL_BSP_SCHEDULE_DELAY="20",
        OTEL_BLRP_SCHEDULE_DELAY="20",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
    )


def test_a_hanging_collector_adds_no_wait(monkeypatch: pytest.MonkeyPatch, kaizala_up: Upstream) -> None:
    off = p99_of_a_run()
    with collector() as hanging:
        hanging.mode = "hang"
        fast_exports(monkeypatch, hanging.url)
        assert telemetry.restart().name == "otlp"
        try:
            on = p99_of_a_run()
            assert hanging.hung > 0, "no export reached the collector during the run"
        finally:
            hanging.release.set()
            telemetry.shutdown()
    assert on <= off + 10, f"p99 {on:.2f} ms with a hanging collector, {off:.2f} ms with telemetry off"


def test_a_collector_that_is_down_adds_no_wait(monkeypatch: pytest.MonkeyPatch, kaizala_up: Upstream) -> None:
    off = p99_of_a_run()
    fast_exports(monkeypatch, down_url())
    assert telemetry.restart().name == "otlp"
    try:
        on = p99_of_a_run()
        telemetry.force_flush(1.0)  # tries, fails (in the SDK's log), and returns
    finally:
        telemetry.shutdown()
    assert on <= off + 10, f"p99 {on:.2f} ms with the collector down, {off:.2f} ms with telemetry off"


def test_a_collector_that_fails_every_export_fails_no_request(
    monkeypatch: pytest.MonkeyPatch, kaizala_up: Upstream
) -> None:
    with collector() as failing:
        failing.mode = "fail"
        fast_exports(monkeypatch, failing.url)
        telemetry.restart()
        try:
            for _ in range(20):
                assert validate(make_jwt()).status_code == 200
            assert validate().status_code == 401
        finally:
            telemetry.shutdown()
