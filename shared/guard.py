"""The one-line guard for a function, and the one place a failure becomes its documented answer.

@protected
def main(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    return json_response({"hello": identity.name})
"""

import functools
import logging
from collections.abc import Callable
from typing import overload

import azure.functions as func

from .authenticator import authenticate
from .errors import ApiError, InternalError
from .identity import Identity
from .responses import error_response
from .settings import OneSnapshotPerRequest, SettingsError

log = logging.getLogger("kaizala_auth")

Handler = Callable[[func.HttpRequest, Identity], func.HttpResponse]
Main = Callable[[func.HttpRequest], func.HttpResponse]


@overload
def protected(handler: Handler, *, accept_body_token: bool = False) -> Main: ...
@overload
def protected(handler: None = None, *, accept_body_token: bool = False) -> Callable[[Handler], Main]: ...
def protected(handler: Handler | None = None, *, accept_body_token: bool = False) -> Main | Callable[[Handler], Main]:
    """Guard a function: `handler(req, identity)` runs only for an authenticated, allowed caller.

    Every ApiError becomes its documented JSON answer, and anything unexpected a logged `internal_error`.
    """

    def decorate(handler: Handler) -> Main:
        # No __wrapped__: the Functions worker reads main's signature and must see only `req`.
        @functools.wraps(handler, updated=())
        def main(req: func.HttpRequest) -> func.HttpResponse:
            try:
                with OneSnapshotPerRequest():
                    identity = authenticate(req, accept_body_token=accept_body_token)
                    return handler(req, identity)
            except SettingsError as exc:
                log.error("server misconfigured: %s (fix this app setting)", exc.detail)
                return error_response(exc)
            except ApiError as exc:
                log.debug("request answered %d %s", exc.status, exc.code)
                return error_response(exc)
            except Exception:
                log.exception("unhandled error in %s", handler.__module__)
                return error_response(InternalError())

        del main.__wrapped__
        return main

    return decorate(handler) if handler is not None else decorate
