"""An OTLP/HTTP receiver (dev-only): what the functions export, decoded with OpenTelemetry's own protobuf classes
(`opentelemetry-proto`), kept in memory, and summed up for the local telemetry page (`python -m devserver
--telemetry`: `/telemetry/` on the stand-in's port) and for the tests' collector (tests/otlp_collector.py).

It accepts what the SDK's OTLP/HTTP exporters send: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf bodies,
gzip or not, answered with the matching (empty) Export*ServiceResponse.
"""

import gzip
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")
KEEP = 20_000  # spans and log records kept (the newest)
MAX_BODY_BYTES = 16 * 1024 * 1024
Attributes = dict[str, Any]


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int
    start_ns: int
    end_ns: int
    attributes: Attributes
    status: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: Attributes

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True)
class Point:
    """One data point of one metric as exported (cumulative sums and histograms carry their totals so far)."""

    metric: str
    unit: str
    kind: str  # "sum", "gauge" or "histogram"
    attributes: Attributes
    resource: Attributes
    time_ns: int
    value: float = 0.0  # sum and gauge
    count: int = 0  # histogram
    total: float = 0.0
    bounds: tuple[float, ...] = ()
    buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class LogLine:
    body: str
    severity: str
    trace_id: str
    span_id: str
    attributes: Attributes
    resource: Attributes


@dataclass
class Received:
    """Everything exported to this receiver, newest last."""

    spans: deque[Span] = field(default_factory=lambda: deque(maxlen=KEEP))
    points: list[Point] = field(default_factory=list)
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=KEEP))
    requests: dict[str, int] = field(default_factory=dict)  # path -> exports received
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # --- receiving ---------------------------------------------------------------------------------------------

    def accept(self, path: str, body: bytes, content_encoding: str | None = None) -> bytes:
        """Decode one export; the protobuf answer to send back. ValueError for a body that is not one."""
        if path not in PATHS:
            raise ValueError(f"not an OTLP path: {path}")
        if (content_encoding or "").lower() == "gzip":
            body = gzip.decompress(body)
        try:
            if path == "/v1/traces":
                spans = list(_spans(ExportTraceServiceRequest.FromString(body)))
                with self.lock:
                    self.spans.extend(spans)
                answer = ExportTraceServiceResponse().SerializeToString()
            elif path == "/v1/metrics":
                points = list(_points(ExportMetricsServiceRequest.FromString(body)))
                with self.lock:
                    self.points.extend(points)
                    del self.points[: max(0, len(self.points) - 10 * KEEP)]
                answer = ExportMetricsServiceResponse().SerializeToString()
            else:
                logs = list(_logs(ExportLogsServiceRequest.FromString(body)))
                with self.lock:
                    self.logs.extend(logs)
                answer = ExportLogsServiceResponse().SerializeToString()
        except DecodeError as error:
            raise ValueError(f"not an OTLP protobuf body: {error}") from None
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.changed.notify_all()
        return bytes(answer)

    def clear(self) -> None:
        with self.lock:
            self.spans.clear()
            self.points.clear()
            self.logs.clear()
            self.requests.clear()

    def wait(self, condition: Any, seconds: float) -> bool:
        """Wait (without polling) until `condition(self)` holds after an export arrives, at most `seconds`."""
        give_up = time.monotonic() + seconds
        with self.changed:
            while not condition(self):
                left = give_up - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    # --- reading -----------------------------------------------------------------------------------------------

    def latest(self, metric: str) -> dict[tuple[tuple[str, Any], ...], Point]:
        """The newest point of each series of `metric` (a series: its resource and attributes)."""
        newest: dict[tuple[tuple[str, Any], ...], Point] = {}
        with self.lock:
            points = [point for point in self.points if point.metric == metric]
        for point in points:
            series = (*sorted(point.resource.items()), ("|", "|"), *sorted(point.attributes.items()))
            known = newest.get(series)
            if known is None or point.time_ns >= known.time_ns:
                newest[series] = point
        return newest

    def total(self, metric: str, **attributes: Any) -> float:
        """A cumulative sum's total over every series (every instance) whose attributes include `attributes`;
        for a histogram, its count."""
        found = 0.0
        for point in self.latest(metric).values():
            if all(point.attributes.get(key) == value for key, value in attributes.items()):
                found += point.count if point.kind == "histogram" else point.value
        return found

    def spans_named(self, name: str) -> list[Span]:
        with self.lock:
            return [span for span in self.spans if span.name == name]

    def strings(self) -> Iterator[str]:
        """Every text exported: span names, attribute keys and values, status messages, log bodies, resources."""
        with self.lock:
            spans, points, logs = list(self.spans), list(self.points), list(self.logs)
        for span in spans:
            yield span.name
            yield span.status_message
            yield from _texts(span.attributes)
            yield from _texts(span.resource)
        for point in points:
            yield point.metric
            yield from _texts(point.attributes)
            yield from _texts(point.resource)
        for line in logs:
            yield line.body
            yield from _texts(line.attributes)
            yield from _texts(line.resource)

    def summary(self) -> dict[str, Any]:
        """The figures the telemetry page shows (GET /v1/dev/telemetry)."""
        requests: dict[str, float] = {}
        for point in self.latest("kaizala_auth.requests").values():
            name = "/".join(str(point.attributes.get(key, "?")) for key in ("provider", "outcome", "source"))
            requests[name] = requests.get(name, 0) + point.value
        answered = sum(requests.values())
        hits = sum(value for name, value in requests.items() if name.endswith(("/hit", "/fleet")))
        shed: dict[str, float] = {}
        for point in self.latest("kaizala_auth.shed").values():
            reason = str(point.attributes.get("reason", "?"))
            shed[reason] = shed.get(reason, 0) + point.value
        active: dict[str, float] = {}
        for point in self.latest("kaizala_auth.upstream.active").values():
            provider = str(point.attributes.get("provider", "?"))
            active[provider] = active.get(provider, 0) + point.value
        fleet = [point.value for point in self.latest("kaizala_auth.fleet.available").values()]
        return {
            "requests": dict(sorted(requests.items())),
            "answered": answered,
            "hit_ratio": hits / answered if answered else None,
            "shed": shed,
            "upstream": {name: _percentiles(self.spans_named(name)) for name in _UPSTREAM_SPANS},
            "upstream_outcomes": _by(self.latest("kaizala_auth.upstream.duration"), ("provider", "outcome")),
            "upstream_active": active,
            "fleet_available": min(fleet) if fleet else None,
            "fleet_state_changes": _by(self.latest("kaizala_auth.fleet.state_changes"), ("state", "cause")),
            "fleet_round_trips": {
                name: _percentiles(spans)
                for name, spans in _group(span for span in list(self.spans) if span.name.startswith("redis ")).items()
            },
            "signing_key_fetches": _by(self.latest("kaizala_auth.signing_keys.fetches"), ("outcome",)),
            "logs": [f"{line.severity} {line.body}" for line in list(self.logs)[-30:]],
            "spans": [
                {
                    "name": span.name,
                    "trace_id": span.trace_id,
                    "parent_span_id": span.parent_span_id,
                    "ms": round(span.seconds * 1000, 2),
                    "outcome": span.attributes.get("outcome"),
                }
                for span in list(self.spans)[-30:]
            ],
            "exports": dict(self.requests),
        }


_UPSTREAM_SPANS = ("kaizala users/me", "entra signing keys")


def _by(latest: dict[Any, Point], keys: tuple[str, ...]) -> dict[str, float]:
    found: dict[str, float] = {}
    for point in latest.values():
        name = "/".join(str(point.attributes.get(key, "?")) for key in keys)
        found[name] = found.get(name, 0) + (point.count if point.kind == "histogram" else point.value)
    return dict(sorted(found.items()))


def _group(spans: Any) -> dict[str, list[Span]]:
    groups: dict[str, list[Span]] = {}
    for span in spans:
        groups.setdefault(span.name, []).append(span)
    return groups


def _percentiles(spans: list[Span]) -> dict[str, float] | None:
    """p50, p95, p99 of the spans' durations in milliseconds, and their count (None: no span)."""
    if not spans:
        return None
    ms = sorted(span.seconds * 1000 for span in spans)
    if len(ms) == 1:
        return {"count": 1, "p50": ms[0], "p95": ms[0], "p99": ms[0]}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"count": len(ms), "p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


def _texts(attributes: Attributes) -> Iterator[str]:
    for key, value in attributes.items():
        yield key
        yield str(value)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Any) -> Attributes:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                yield Span(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.kind,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=_attributes(span.attributes),
                    status=span.status.code,
                    status_message=span.status.message,
                    resource=resource,
                )


def _points(request: ExportMetricsServiceRequest) -> Iterator[Point]:
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind in ("sum", "gauge"):
                    for point in getattr(metric, kind).data_points:
                        number = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                        yield Point(
                            metric.name,
                            metric.unit,
                            kind,
                            _attributes(point.attributes),
                            resource,
                            point.time_unix_nano,
                            value=number,
                        )
                elif kind == "histogram":
                    for point in metric.histogram.data_points:
                        yield Point(
                            metric.name,
                            metric.unit,
                            kind,
                            _attributes(point.attributes),
                            resource,
                            point.time_unix_nano,
                            count=point.count,
                            total=point.sum,
                            bounds=tuple(point.explicit_bounds),
                            buckets=tuple(point.bucket_counts),
                        )


def _logs(request: ExportLogsServiceRequest) -> Iterator[LogLine]:
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        for scope in resource_logs.scope_logs:
            for record in scope.log_records:
                body = _value(record.body)
                yield LogLine(
                    body="" if body is None else str(body),
                    severity=record.severity_text,
                    trace_id=record.trace_id.hex(),
                    span_id=record.span_id.hex(),
                    attributes=_attributes(record.attributes),
                    resource=resource,
                )
