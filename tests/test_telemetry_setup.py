"""Which pipeline the environment picks, and how each is set up: Application Insights through the distro the worker
configured (or our call to it, with the worker's arguments, when it did not), OTLP honouring the standard OTEL_*
variables, and off otherwise. Microsoft's exporters are never started here (they reach Microsoft's endpoints): a
stand-in `azure.monitor.opentelemetry` records the call and sets in-memory SDK providers instead."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shared import telemetry
from shared.telemetry import names, setup
from tests.otlp_collector import collector
from tests.telemetry_helpers import otlp_env, validate

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("environ", "chosen"),
    [
        ({}, "off"),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}, "off"),  # the host's, alone
        ({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}, "azure-monitor"),
        (
            {"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"},
            "azure-monitor",
        ),
        ({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "false"}, "off"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, "off"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, "off"),
        ({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "TRUE"}, "off"),
    ],
)
def test_the_environment_picks_the_pipeline(environ: dict[str, str], chosen: str) -> None:
    assert setup.choose(environ) == chosen


STAND_IN = textwrap.dedent(
    """
    import json, os, sys, types
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    calls = []
    reader = InMemoryMetricReader()

    def configure_azure_monitor(**options):
        calls.append(options)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        trace.set_tracer_provider(TracerProvider())

    distro = types.ModuleType("azure.monitor.opentelemetry")
    distro.configure_azure_monitor = configure_azure_monitor
    sys.modules["azure.monitor.opentelemetry"] = distro
    if os.environ.get("AS_THE_WORKER") == "1":  # what the worker does at WorkerInitRequest, before any function loads
        configure_azure_monitor(connection_string=os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"], logger_name="")

    import ValidateToken
    from tests.helpers import request
    from shared import telemetry
    print(ValidateToken.main(request()).status_code)
    print(ValidateToken.main(request()).status_code)
    counted = {
        metric.name: sum(point.value for point in metric.data.data_points)
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    print(json.dumps({"calls": calls, "pipeline": telemetry.active().name, "counted": counted}))
    """
)


def run_as_azure(as_the_worker: bool) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "APPLICATIONINSIGHTS"))}
    env |= {
        "AUTH_PROVIDERS": "kaizala",
        "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "*",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
        "AS_THE_WORKER": "1" if as_the_worker else "0",
    }
    result = subprocess.run(
        [sys.executable, "-c", STAND_IN], capture_output=True, text=True, check=False, env=env, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == ["401", "401"]
    found: dict[str, object] = json.loads(lines[2])
    return found


def test_the_workers_distro_is_used_as_the_worker_configured_it() -> None:
    found = run_as_azure(as_the_worker=True)
    assert len(found["calls"]) == 1  # type: ignore[arg-type]  # the worker's own call: none of ours
    assert found["pipeline"] == "azure-monitor"
    assert found["counted"] == {names.REQUESTS: 2}


def test_a_worker_that_did_not_configure_it_gets_the_workers_call_from_us() -> None:
    found = run_as_azure(as_the_worker=False)
    assert found["calls"] == [
        {"connection_string": "InstrumentationKey=00000000-0000-0000-0000-000000000000", "logger_name": ""}
    ]
    assert found["pipeline"] == "azure-monitor"
    assert found["counted"] == {names.REQUESTS: 2}


def test_otlp_honours_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with collector() as running:
        otlp_env(monkeypatch, running.url, OTEL_SERVICE_NAME="contoso-cards", OTEL_TRACES_EXPORTER="none")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        telemetry.restart()
        try:
            assert validate().status_code == 401
            assert telemetry.force_flush(5.0)
        finally:
            telemetry.shutdown()
        (point,) = running.received.latest(names.REQUESTS).values()
        assert point.resource["service.name"] == "contoso-cards"
        assert point.resource["deployment.environment"] == "test"
        assert "/v1/traces" not in running.received.requests  # OTEL_TRACES_EXPORTER=none


def test_without_a_service_name_it_is_the_function_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    with collector() as running:
        otlp_env(monkeypatch, running.url)
        monkeypatch.setenv("WEBSITE_SITE_NAME", "func-kaizala-prod")
        telemetry.restart()
        try:
            validate()
            telemetry.force_flush(5.0)
        finally:
            telemetry.shutdown()
        (point,) = running.received.latest(names.REQUESTS).values()
        assert point.resource["service.name"] == "func-kaizala-prod"


def test_a_pipeline_that_cannot_start_leaves_telemetry_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret_header = "api-key=do-not-log-me"

    def broken(_environ: object) -> setup.Pipeline:
        raise ValueError(f"bad header {secret_header}")

    monkeypatch.setattr(setup, "otlp", broken)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    caplog.set_level(logging.INFO)
    assert telemetry.restart() is telemetry.OFF
    assert validate().status_code == 401
    assert "telemetry off: the otlp pipeline could not start (ValueError)" in caplog.text
    assert secret_header not in caplog.text


def test_host_json_keeps_the_classic_host_telemetry() -> None:
    """docs/telemetry.md: the worker's telemetry needs no `telemetryMode`; host.json stays what Core Tools runs
    and keeps its Application Insights sampling settings (ignored under telemetryMode OpenTelemetry)."""
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert "telemetryMode" not in host
    assert host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"] == "Request"
