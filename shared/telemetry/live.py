"""Telemetry on: the `kaizala_auth` instruments on a meter and tracer provider, and the hooks shared/ calls.

The per-request counters (`requests`, `shed`) are tallies under a lock, read by observable counters when the
metric reader collects: a request pays a dict update, not an SDK measurement (about 10 µs each, a fifth of a cached
request). Upstream calls and Redis round trips, each far slower than their bookkeeping, use synchronous instruments
and get a span each.

Every attribute value comes from `names`' closed vocabulary; no span records an exception's message.
"""

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from ..errors import IdentityBadResponse, InvalidToken, KaizalaThrottled, TooSlow
from . import names
from .correlation import Invocation, carry, parent

F = TypeVar("F", bound=Callable[..., Any])

UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
FLEET_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_NOT_FAILED = frozenset({"ok", "rejected"})


class Fleet(Protocol):
    @property
    def skipped(self) -> bool: ...


class Tally:
    """Counts by attribute values, read by an observable counter (a cumulative, monotonic sum)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], int] = {}

    def add(self, values: tuple[str, ...]) -> None:
        with self._lock:
            self._counts[values] = self._counts.get(values, 0) + 1

    def counts(self) -> dict[tuple[str, ...], int]:
        with self._lock:
            return dict(self._counts)

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, dict(zip(self.keys, values, strict=True))) for values, count in self.counts().items()
        ]


class Live:
    on = True

    def __init__(
        self,
        meter_provider: MeterProvider,
        tracer_provider: TracerProvider,
        name: str,
        fleets: "weakref.WeakSet[Any] | None" = None,
    ) -> None:
        self.name = name  # which pipeline: "otlp", "azure-monitor", ...
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
        meter = meter_provider.get_meter(names.METER)
        self.tracer = tracer_provider.get_tracer(names.TRACER)
        self.requests = Tally((names.PROVIDER, names.OUTCOME, names.SOURCE))
        self.shed = Tally((names.REASON,))
        self._fleets: weakref.WeakSet[Any] = weakref.WeakSet() if fleets is None else fleets
        meter.create_observable_counter(
            names.REQUESTS,
            callbacks=[self.requests.observe],
            unit="{request}",
            description="Requests answered, by provider, outcome (ok or the error code) and the identity's source",
        )
        meter.create_observable_counter(
            names.SHED,
            callbacks=[self.shed.observe],
            unit="{request}",
            description="Requests answered 503 without an upstream call, by reason",
        )
        self.upstream_duration = meter.create_histogram(
            names.UPSTREAM_DURATION,
            unit="s",
            description="Upstream calls (Kaizala users/me, Entra signing keys), by provider and outcome",
            explicit_bucket_boundaries_advisory=UPSTREAM_BUCKETS,
        )
        self.upstream_active = meter.create_up_down_counter(
            names.UPSTREAM_ACTIVE, unit="{call}", description="Upstream calls in flight, by provider"
        )
        self.fleet_duration = meter.create_histogram(
            names.FLEET_DURATION,
            unit="s",
            description="Redis round trips of the fleet cache, by operation and outcome",
            explicit_bucket_boundaries_advisory=FLEET_BUCKETS,
        )
        meter.create_observable_gauge(
            names.FLEET_AVAILABLE,
            callbacks=[self._fleet_available],
            unit="1",
            description="1 while the fleet cache's Redis is in use, 0 while it is skipped after failures",
        )
        self.fleet_changes = meter.create_counter(
            names.FLEET_STATE_CHANGES, unit="{change}", description="The fleet cache skipped or used again, by cause"
        )
        self.key_fetches = meter.create_counter(
            names.SIGNING_KEY_FETCHES, unit="{fetch}", description="Fetches of Entra ID's signing keys, by outcome"
        )

    # --- hooks -------------------------------------------------------------------------------------------------

    def invocation(self, context: object) -> Invocation:
        trace_context = getattr(context, "trace_context", None)
        return Invocation(
            self,
            getattr(trace_context, "trace_parent", "") or "",
            getattr(trace_context, "trace_state", "") or "",
        )

    def carry(self, function: F) -> F:
        return carry(function)

    def upstream_call(self, provider: str, span: str, *, signing_keys: bool = False) -> "UpstreamCall":
        return UpstreamCall(self, provider, span, signing_keys)

    def redis_round_trip(self, operation: str) -> "RoundTrip":
        return RoundTrip(self, operation)

    def fleet_changed(self, available: bool, cause: str) -> None:
        state = "available" if available else "unavailable"
        self.fleet_changes.add(1, {names.STATE: state, names.CAUSE: cause})

    def _fleet_available(self, _options: CallbackOptions) -> Iterable[Observation]:
        # Degraded counts as unavailable: a read-only user's reads work, yet nothing is shared.
        return [Observation(0 if fleet.skipped or fleet.health_cause else 1) for fleet in list(self._fleets)]

    def force_flush(self, timeout_seconds: float = 5.0) -> bool:
        millis = int(timeout_seconds * 1000)
        done = True
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                done = bool(flush(millis)) and done
        return done

    def shutdown(self) -> None:
        pass  # the pipeline owns the providers (shared.telemetry.setup)


class UpstreamCall:
    """One call to an upstream service: a span (current while the call runs), the in-flight count, the duration by
    outcome and, for Entra's keys, the fetch count."""

    __slots__ = ("_live", "_provider", "_signing_keys", "_span", "_started", "_token")

    def __init__(self, live: Live, provider: str, span: str, signing_keys: bool) -> None:
        self._live = live
        self._provider = provider
        self._signing_keys = signing_keys
        self._span = live.tracer.start_span(
            span, context=parent(), kind=SpanKind.CLIENT, attributes={names.PROVIDER: provider}
        )
        self._started = 0.0
        self._token: object = None

    def __enter__(self) -> "UpstreamCall":
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._live.upstream_active.add(1, {names.PROVIDER: self._provider})
        self._started = time.perf_counter()
        return self

    def status(self, code: int) -> None:
        self._span.set_attribute(names.STATUS_CODE, code)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace_back: TracebackType | None
    ) -> None:
        seconds = time.perf_counter() - self._started
        outcome = upstream_outcome(error)
        live = self._live
        live.upstream_duration.record(seconds, {names.PROVIDER: self._provider, names.OUTCOME: outcome})
        live.upstream_active.add(-1, {names.PROVIDER: self._provider})
        if self._signing_keys:
            live.key_fetches.add(1, {names.OUTCOME: outcome})
        self._span.set_attribute(names.OUTCOME, outcome)
        if outcome not in _NOT_FAILED:
            self._span.set_status(Status(StatusCode.ERROR, outcome))
        otel_context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


class RoundTrip:
    """One Redis round trip: a span and its duration by operation and outcome. `end` it exactly once."""

    __slots__ = ("_live", "_operation", "_span", "_started")

    def __init__(self, live: Live, operation: str) -> None:
        self._live = live
        self._operation = operation
        self._span = live.tracer.start_span(
            names.SPAN_REDIS.format(operation=operation),
            context=parent(),
            kind=SpanKind.CLIENT,
            attributes={names.OPERATION: operation, "db.system": "redis"},
        )
        self._started = time.perf_counter()

    def end(self, error: BaseException | None = None) -> None:
        seconds = time.perf_counter() - self._started
        outcome = fleet_outcome(error)
        self._live.fleet_duration.record(seconds, {names.OPERATION: self._operation, names.OUTCOME: outcome})
        self._span.set_attribute(names.OUTCOME, outcome)
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, outcome))
        self._span.end()


def upstream_outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, InvalidToken):
        return "rejected"
    if isinstance(error, KaizalaThrottled):
        return "throttled"
    if isinstance(error, TooSlow):
        return "timeout"
    if isinstance(error, IdentityBadResponse):
        return "bad_response"
    return "unavailable"  # IdentityUnavailable, or anything unexpected


def fleet_outcome(error: BaseException | None) -> str:
    """A Redis failure by kind, from its class names (redis-py's TimeoutError and ConnectionError, or the
    builtins): no message, which could quote a command."""
    if error is None:
        return "ok"
    kinds = {cls.__name__ for cls in type(error).__mro__}
    if "TimeoutError" in kinds:
        return "timeout"
    if "ConnectionError" in kinds:
        return "connection"
    return "error"
