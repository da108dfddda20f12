"""Telemetry off: every hook a shared no-op object. Imports nothing of OpenTelemetry, and costs a method call."""

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class OffInvocation:
    """A request's note while telemetry is off: written to by the checks (provider, source), never read."""

    __slots__ = ("provider", "source")

    def __init__(self) -> None:
        self.provider = "none"
        self.source = "none"

    def close(self, failure: BaseException | None) -> None:
        pass


class OffCall:
    """An upstream call or Redis round trip while telemetry is off."""

    __slots__ = ()

    def __enter__(self) -> "OffCall":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        return None

    def status(self, code: int) -> None:
        pass

    def end(self, error: BaseException | None = None) -> None:
        pass


class Off:
    on = False
    name = "off"

    def __init__(self) -> None:
        self._invocation = OffInvocation()

    def invocation(self, context: object) -> OffInvocation:
        return self._invocation  # shared: what the checks write to it is never read

    def carry(self, function: F) -> F:
        return function

    def upstream_call(self, provider: str, span: str, *, signing_keys: bool = False) -> OffCall:
        return OFF_CALL

    def redis_round_trip(self, operation: str) -> OffCall:
        return OFF_CALL

    def fleet_changed(self, available: bool, cause: str) -> None:
        pass

    def force_flush(self, timeout_seconds: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


OFF_CALL = OffCall()
OFF = Off()
