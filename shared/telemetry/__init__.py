"""Telemetry: the `kaizala_auth` metrics, spans and log correlation, through the OpenTelemetry API.

The rest of shared/ calls the hooks below; each asks the process's one `Telemetry`, made on first use from the
environment (`setup`). Off (the default), it is `off.OFF`: shared no-op objects, and nothing of OpenTelemetry is
imported. On, `live.Live` records through the pipeline `setup` chose. Exporting happens on the SDK's own threads:
a slow or absent collector never slows or fails a request.

The pieces: `names` (every name and attribute value), `off`, `live` (the instruments), `correlation` (the host's
trace parent and the request's note), `setup` (which pipeline). docs/telemetry.md says what each metric means.
"""

import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from . import names
from .off import OFF, OFF_CALL, Off

F = TypeVar("F", bound=Callable[..., Any])


class Invocation(Protocol):
    """A request's note: which provider took the token and where its identity came from; `close` records it."""

    provider: str
    source: str

    def close(self, failure: BaseException | None) -> None: ...


class Telemetry(Protocol):
    on: bool
    name: str

    def invocation(self, context: object) -> Invocation: ...
    def carry(self, function: F) -> F: ...
    def upstream_call(self, provider: str, span: str, *, signing_keys: bool = False) -> Any: ...
    def redis_round_trip(self, operation: str) -> Any: ...
    def fleet_changed(self, available: bool, cause: str) -> None: ...
    def force_flush(self, timeout_seconds: float = 5.0) -> bool: ...
    def shutdown(self) -> None: ...


class _Process:
    """The process's one telemetry and the pipeline under it."""

    def __init__(self) -> None:
        self.active: Telemetry | None = None  # None: not set up yet
        self.pipeline: Any = None
        self.lock = threading.Lock()


_process = _Process()
FLEETS: "weakref.WeakSet[Any]" = weakref.WeakSet()  # every fleet cache alive (its availability is a gauge)


def active() -> Telemetry:
    """The process's telemetry, set up from the environment on first use."""
    telemetry = _process.active
    return telemetry if telemetry is not None else restart(keep=True)


def restart(environ: Mapping[str, str] | None = None, *, keep: bool = False) -> Telemetry:
    """Set telemetry up again from the environment (tests, the local host); the previous pipeline is flushed and
    shut down first. `keep`: only if none is set up yet (first use)."""
    with _process.lock:
        if keep and _process.active is not None:
            return _process.active
        _stop()
        environment = os.environ if environ is None else environ
        from .setup import choose  # noqa: PLC0415 - setup itself imports nothing heavy

        telemetry: Telemetry = OFF
        if choose(environment) != "off":
            telemetry = _start(environment)
        _process.active = telemetry
        return telemetry


def use(telemetry: Telemetry, *, stop: bool = True) -> Telemetry:
    """Record through `telemetry` from now on (providers of a test's own, or OFF). `stop`: flush and shut down the
    pipeline set up so far; False keeps it, for switching back (the bench's on/off comparison)."""
    with _process.lock:
        if stop:
            _stop()
        if telemetry.on:
            _correlate_logs(True)
        _process.active = telemetry
        return telemetry


def shutdown() -> None:
    """Flush and stop; telemetry is off until `restart`."""
    with _process.lock:
        _stop()
        _process.active = OFF


def _start(environment: Mapping[str, str]) -> Telemetry:
    from .live import Live  # noqa: PLC0415 - the OpenTelemetry API, only once telemetry is on
    from .setup import at_exit, build  # noqa: PLC0415

    pipeline = build(environment)
    if pipeline is None:
        return OFF
    try:
        live = Live(pipeline.meter_provider, pipeline.tracer_provider, pipeline.name, FLEETS)
    except Exception as error:  # noqa: BLE001 - telemetry that cannot start must never stop a request
        logging.getLogger(names.LOGGER).warning("telemetry off: its instruments failed (%s)", type(error).__name__)
        pipeline.shutdown()
        return OFF
    _process.pipeline = pipeline
    if pipeline.owned:
        at_exit(pipeline)
    _correlate_logs(True)
    logging.getLogger(names.LOGGER).info("telemetry on: %s", pipeline.name)
    return live


def _stop() -> None:
    current = _process.active
    if current is not None and current.on:
        if _process.pipeline is not None:
            _process.pipeline.force_flush(2.0)
        current.shutdown()
        _correlate_logs(False)
    if _process.pipeline is not None:
        _process.pipeline.shutdown()
        _process.pipeline = None


def _correlate_logs(on: bool) -> None:
    from .correlation import CorrelateLogs  # noqa: PLC0415

    logger = logging.getLogger(names.LOGGER)
    for existing in [f for f in logger.filters if isinstance(f, CorrelateLogs)]:
        logger.removeFilter(existing)
    if on:
        logger.addFilter(CorrelateLogs())


# --- the hooks shared/ calls ---------------------------------------------------------------------------------------


def invocation(context: object) -> Invocation:
    """The guard, as a request starts: `context` is the worker's func.Context (its trace parent)."""
    return active().invocation(context)


def carry(function: F) -> F:
    """`function` to run on a new thread, inside the current request's trace (identity with no telemetry)."""
    return active().carry(function)


def upstream_call(provider: str, span: str, *, signing_keys: bool = False) -> Any:
    """`with upstream_call("kaizala", names.SPAN_KAIZALA) as call:` around one upstream call."""
    return active().upstream_call(provider, span, signing_keys=signing_keys)


def redis_round_trip(operation: str) -> Any:
    """Called by the fleet's Redis client for each round trip; `operation` names the fleet cache's part that asked
    for it (lookup, store, try_lead, ...). `end(error)` it when the round trip is over."""
    telemetry = active()
    if not telemetry.on:
        return OFF_CALL
    return telemetry.redis_round_trip(operation)


def fleet_changed(available: bool, cause: str) -> None:
    """The fleet cache stops sharing (`available` False: Redis skipped, or degraded) or shares again; `cause`: the
    failure's kind (shared.fleet.health.Cause.kind), or "recovered"."""
    active().fleet_changed(available, cause)


def watch_fleet(fleet: Any) -> None:
    """Report `fleet.skipped` as the fleet's availability while `fleet` lives (whenever telemetry is on)."""
    FLEETS.add(fleet)


def force_flush(timeout_seconds: float = 5.0) -> bool:
    """Export what is pending now (tests, the local host, the bench); False when something did not make it."""
    pipeline = _process.pipeline
    if pipeline is not None:
        return bool(pipeline.force_flush(timeout_seconds))
    return active().force_flush(timeout_seconds)


__all__ = [
    "OFF",
    "FLEETS",
    "Off",
    "Telemetry",
    "active",
    "carry",
    "fleet_changed",
    "force_flush",
    "invocation",
    "names",
    "redis_round_trip",
    "restart",
    "shutdown",
    "upstream_call",
    "use",
    "watch_fleet",
]
