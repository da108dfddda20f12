"""The one-line guard for a function, and the one place a failure becomes its documented answer.

@protected
def main(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    return json_response({"hello": identity.name})

The worker sees `main(req, context)`: `context` (func.Context, which the worker passes by that name without a
binding) carries the host's trace parent, which telemetry makes the parent of the request's spans. Called without
a host (tests, a script), `context` is NO_HOST, whose trace parent is empty.
"""

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, overload

import azure.functions as func

from . import telemetry
from .authenticator import authenticate
from .errors import ApiError, InternalError
from .identity import Identity
from .responses import error_response
from .settings import OneSnapshotPerRequest, SettingsError

log = logging.getLogger("kaizala_auth")

Handler = Callable[[func.HttpRequest, Identity], func.HttpResponse]
Main = Callable[..., func.HttpResponse]


class _Trace:
    def __init__(self, trace_parent: str, trace_state: str) -> None:
        self.trace_parent = trace_parent
        self.trace_state = trace_state
        self.attributes: dict[str, str] = {}


class Invocation(func.Context):
    """A `context` as the worker passes one to a function that takes it: for a call made without a Functions host
    (NO_HOST: no invocation, no trace parent), or by the local host, which fills it in from its request."""

    def __init__(
        self,
        invocation_id: str = "",
        function_name: str = "",
        function_directory: str = "",
        trace_parent: str = "",
        trace_state: str = "",
    ) -> None:
        self._invocation_id = invocation_id
        self._name = function_name
        self._directory = function_directory
        self._trace = _Trace(trace_parent, trace_state)
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return None


NO_HOST: func.Context = Invocation()
_NAMES = ("__module__", "__name__", "__qualname__", "__doc__")


@overload
def protected(handler: Handler, *, accept_body_token: bool = False) -> Main: ...
@overload
def protected(handler: None = None, *, accept_body_token: bool = False) -> Callable[[Handler], Main]: ...
def protected(handler: Handler | None = None, *, accept_body_token: bool = False) -> Main | Callable[[Handler], Main]:
    """Guard a function: `handler(req, identity)` runs only for an authenticated, allowed caller.

    Every ApiError becomes its documented JSON answer, and anything unexpected a logged `internal_error`.
    """

    def decorate(handler: Handler) -> Main:
        # No __wrapped__: the Functions worker reads main's signature and must see only `req` and `context`; and
        # main's own annotations (the worker checks `context` is func.Context), not the handler's.
        @functools.wraps(handler, assigned=_NAMES, updated=())
        def main(req: func.HttpRequest, context: func.Context = NO_HOST) -> func.HttpResponse:
            request = telemetry.invocation(context)
            failure: BaseException | None = None
            try:
                with OneSnapshotPerRequest():
                    identity = authenticate(req, accept_body_token=accept_body_token, request=request)
                    return handler(req, identity)
            except SettingsError as exc:
                failure = exc
                log.error("server misconfigured: %s (fix this app setting)", exc.detail)
                return error_response(exc)
            except ApiError as exc:
                failure = exc
                log.debug("request answered %d %s", exc.status, exc.code)
                return error_response(exc)
            except Exception:
                internal = failure = InternalError()
                log.exception("unhandled error in %s", handler.__module__)
                return error_response(internal)
            finally:
                request.close(failure)

        del main.__wrapped__
        return main

    return decorate(handler) if handler is not None else decorate
