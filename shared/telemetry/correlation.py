"""One invocation while telemetry is on: the host's trace parent, made the parent of every span the request causes
(on its own thread and on the call threads it starts), and the note its request counter is recorded from.

The trace parent (`context.trace_context.trace_parent`, handed over by the worker) is parsed only when something
needs it: a span, or a log record on the request's thread. A cache hit, which does neither, pays for a ContextVar
and a counter only.
"""

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import names

if TYPE_CHECKING:
    from .live import Live

F = TypeVar("F", bound=Callable[..., Any])

_PROPAGATOR = TraceContextTextMapPropagator()
_current: ContextVar["Invocation | None"] = ContextVar("kaizala_auth_invocation", default=None)


class Invocation:
    __slots__ = (
        "_context",
        "_live",
        "_thread",
        "_token",
        "_trace_parent",
        "_trace_state",
        "_var",
        "provider",
        "source",
    )

    def __init__(self, live: "Live", trace_parent: str, trace_state: str) -> None:
        self.provider = names.NONE  # set by the authenticator once a provider takes the token
        self.source = names.NONE  # set by the identity cache: hit, fleet, upstream, shared
        self._live = live
        self._trace_parent = trace_parent
        self._trace_state = trace_state
        self._context: otel_context.Context | None = None
        self._thread = threading.get_ident()
        self._token: Token[otel_context.Context] | None = None
        self._var = _current.set(self)

    def context(self) -> otel_context.Context:
        """The host's invocation as an OpenTelemetry context (empty when the host sent no trace parent)."""
        if self._context is None:
            carrier = {"traceparent": self._trace_parent}
            if self._trace_state:
                carrier["tracestate"] = self._trace_state
            self._context = _PROPAGATOR.extract(carrier, context=otel_context.Context())
        return self._context

    def attach(self) -> None:
        """Make the host's invocation current on the request's thread (once), so its log records are correlated."""
        if self._token is None and threading.get_ident() == self._thread and not _has_span():
            self._token = otel_context.attach(self.context())

    def close(self, failure: BaseException | None) -> None:
        """The request is answered: `failure` is the ApiError it was answered with (None: ok)."""
        live = self._live
        outcome = getattr(failure, "code", "internal_error") if failure is not None else "ok"
        live.requests.add((self.provider, outcome, self.source))
        reason = getattr(failure, "shed_reason", None)
        if reason is not None:
            live.shed.add((reason,))
        try:
            if self._token is not None:
                otel_context.detach(self._token)
                self._token = None
            _current.reset(self._var)
        except (ValueError, RuntimeError):  # closed on another thread than it began on: nothing to undo there
            pass


def current() -> Invocation | None:
    return _current.get()


def parent() -> otel_context.Context | None:
    """The context a new span starts in: the current one when it holds a span, else the invocation's."""
    if _has_span():
        return None
    invocation = _current.get()
    return invocation.context() if invocation is not None else None


def carry(function: F) -> F:
    """`function`, to run on another thread inside the current trace (an upstream call's own thread)."""
    invocation = _current.get()
    captured = otel_context.get_current()
    if invocation is None and not _has_span(captured):
        return function

    def carried(*args: Any, **kwargs: Any) -> Any:
        _current.set(invocation)
        token = otel_context.attach(captured if _has_span(captured) or invocation is None else invocation.context())
        try:
            return function(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return carried  # type: ignore[return-value]


class CorrelateLogs(logging.Filter):
    """On the `kaizala_auth` logger: a record logged on a request's thread makes that request's invocation current
    first, so every handler (Azure Monitor's, OTLP's) files it under the invocation's trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        invocation = _current.get()
        if invocation is not None:
            invocation.attach()
        return True


def _has_span(context: otel_context.Context | None = None) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid
