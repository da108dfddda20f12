"""Which pipeline telemetry exports through, chosen from the environment once per process. The SDK, the exporters
and Microsoft's distro are imported here only, and only for the pipeline chosen (docs/telemetry.md, "Export"):

1. `OTEL_SDK_DISABLED=true`: off, whatever else is set.
2. `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` (with `APPLICATIONINSIGHTS_CONNECTION_STRING`): Application
   Insights through `azure-monitor-opentelemetry`. Azure's Python worker calls `configure_azure_monitor` before it
   loads the functions; we use the providers it set. A worker that did not (an older one, or the local host) gets
   the same call from us, with the same arguments. Entra-authenticated ingestion: the distro's exporters read
   `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` themselves.
3. `OTEL_EXPORTER_OTLP_ENDPOINT` (or a per-signal `OTEL_EXPORTER_OTLP_*_ENDPOINT`): OTLP over HTTP with providers of
   our own, every standard `OTEL_*` variable honoured by the SDK (export interval, headers, timeouts, service
   name, resource attributes, sampler; `OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none` turns a signal off).
4. OpenTelemetry already set up in this process by the app itself: its providers.
5. Otherwise off: nothing is exported (a connection string alone is the host's, and stays the host's).
"""

import atexit
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import names

log = logging.getLogger(names.LOGGER)

TRUE = frozenset({"1", "true", "t", "yes", "y"})
WORKER_SWITCH = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
LOGGER_NAME_SETTING = "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"  # the worker's, passed as the distro's logger_name
OTLP_ENDPOINTS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)
DEFAULT_SERVICE_NAME = "kaizala-auth"


@dataclass
class Pipeline:
    """Providers to record through; `owned`: ours to flush and shut down (not the worker's or the app's)."""

    name: str
    meter_provider: Any
    tracer_provider: Any
    owned: bool = True
    logger_provider: Any = None
    log_handler: logging.Handler | None = None
    _closed: bool = field(default=False, repr=False)

    def force_flush(self, timeout_seconds: float) -> bool:
        """Export what is pending now (spans, metrics, log records); False when something did not make it in time."""
        done = True
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                try:
                    done = bool(flush(int(timeout_seconds * 1000))) and done
                except Exception:  # noqa: BLE001 - a collector that is gone must not fail the caller
                    done = False
        return done

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.log_handler is not None:
            logging.getLogger(names.LOGGER).removeHandler(self.log_handler)
        if not self.owned:
            return
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception:  # noqa: BLE001 - a collector that is gone must not fail the shutdown
                    log.debug("telemetry: a provider failed to shut down")


def choose(environ: Mapping[str, str]) -> str:
    """The pipeline the environment asks for: "off", "azure-monitor", "otlp" or "app" (see the module's doc)."""
    if _true(environ.get("OTEL_SDK_DISABLED")):
        return "off"
    if _true(environ.get(WORKER_SWITCH)):
        return "azure-monitor"
    if any((environ.get(name) or "").strip() for name in OTLP_ENDPOINTS):
        return "otlp"
    if "opentelemetry.trace" in sys.modules and _configured_globally():
        return "app"
    return "off"


def build(environ: Mapping[str, str] = os.environ) -> Pipeline | None:
    """The pipeline chosen, set up; None for off, or when it cannot be set up (said once in the log)."""
    chosen = choose(environ)
    try:
        if chosen == "azure-monitor":
            return azure_monitor(environ)
        if chosen == "otlp":
            return otlp(environ)
        if chosen == "app":
            return global_pipeline("app", owned=False)
    except Exception as error:  # noqa: BLE001 - telemetry that cannot start must never stop a request
        # The type only: a connection string or header value could sit in the message.
        log.warning("telemetry off: the %s pipeline could not start (%s)", chosen, type(error).__name__)
    return None


def azure_monitor(environ: Mapping[str, str]) -> Pipeline:
    """Application Insights through Microsoft's distro: the worker's providers, or the worker's call made here."""
    if not _configured_globally():
        from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - only for this pipeline

        configure_azure_monitor(
            connection_string=environ.get(CONNECTION_STRING), logger_name=environ.get(LOGGER_NAME_SETTING, "")
        )
        log.info("telemetry: Azure Monitor configured here (the worker did not: %s unknown to it)", WORKER_SWITCH)
    return global_pipeline("azure-monitor", owned=False)


def global_pipeline(name: str, *, owned: bool) -> Pipeline:
    from opentelemetry import metrics, trace  # noqa: PLC0415

    return Pipeline(name, metrics.get_meter_provider(), trace.get_tracer_provider(), owned=owned)


def otlp(environ: Mapping[str, str]) -> Pipeline:
    """OTLP/HTTP for every signal not switched off, on providers of our own (never the process's global ones)."""
    # Imported here only: the SDK and the exporter cost a cold start about 0.2 s.
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.instrumentation.logging.handler import LoggingHandler  # noqa: PLC0415
    from opentelemetry.sdk._logs import LoggerProvider  # noqa: PLC0415
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = _resource(environ)
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if _signal_on(environ, "TRACES"):
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    readers = [PeriodicExportingMetricReader(OTLPMetricExporter())] if _signal_on(environ, "METRICS") else []
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    logger_provider = None
    handler: logging.Handler | None = None
    if _signal_on(environ, "LOGS"):
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
        handler = LoggingHandler(logger_provider=logger_provider)
        logging.getLogger(names.LOGGER).addHandler(handler)  # the kaizala_auth records, nobody else's
    return Pipeline(
        "otlp", meter_provider, tracer_provider, owned=True, logger_provider=logger_provider, log_handler=handler
    )


def _resource(environ: Mapping[str, str]) -> Any:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES as the SDK reads them; without a service name, the function
    app's (WEBSITE_SITE_NAME in Azure), else DEFAULT_SERVICE_NAME; without an instance id, the Azure instance's
    (WEBSITE_INSTANCE_ID), else one made for this process: each instance's cumulative counts are a series of
    their own, which a backend adds up."""
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415

    given = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    default: dict[str, str] = {}
    if not (environ.get("OTEL_SERVICE_NAME") or "").strip() and "service.name=" not in given:
        default["service.name"] = environ.get("WEBSITE_SITE_NAME") or DEFAULT_SERVICE_NAME
    if "service.instance.id=" not in given:
        default["service.instance.id"] = environ.get("WEBSITE_INSTANCE_ID") or uuid.uuid4().hex
    return Resource.create(default)


def _signal_on(environ: Mapping[str, str], signal: str) -> bool:
    return (environ.get(f"OTEL_{signal}_EXPORTER") or "").strip().lower() != "none"


def _configured_globally() -> bool:
    """Whether someone (the worker's distro, the app) set SDK providers as OpenTelemetry's global ones."""
    from opentelemetry import metrics, trace  # noqa: PLC0415

    return any(
        callable(getattr(p, "force_flush", None)) for p in (trace.get_tracer_provider(), metrics.get_meter_provider())
    )


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE


def at_exit(pipeline: Pipeline) -> None:
    """Flush and close `pipeline` when the process exits (the providers' own hooks are off: a shut-down pipeline
    must not be shut down again)."""
    atexit.register(pipeline.shutdown)
