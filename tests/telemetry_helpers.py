"""Shared by the telemetry tests: the host's trace parent as the worker hands it, OTLP settings, flushing."""

from typing import Any

import pytest

import ValidateToken
from shared import telemetry
from tests.helpers import request
from tests.otlp_collector import Collector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOST_SPAN = "00f067aa0ba902b7"
TRACE_PARENT = f"00-{TRACE_ID}-{HOST_SPAN}-01"


class Trace:
    def __init__(self, trace_parent: str) -> None:
        self.trace_parent = trace_parent
        self.trace_state = ""


class HostContext:
    """What the worker passes as `context`: only its trace context is read."""

    def __init__(self, trace_parent: str = TRACE_PARENT) -> None:
        self.trace_context = Trace(trace_parent)


def otlp_env(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")  # the test flushes when it wants the figures
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def flush(running: Collector) -> None:
    assert telemetry.force_flush(5.0)
    assert running.received.requests.get("/v1/metrics"), "no metrics export arrived"


def validate(token: str | None = None, *, context: Any = None, **kwargs: Any) -> Any:
    """ValidateToken's answer, called as the worker calls it: with the host's context."""
    return ValidateToken.main(request(token=token, **kwargs), context=context or HostContext())
