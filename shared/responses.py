"""JSON responses, and the single place where a typed error becomes an HTTP answer."""

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from .errors import ApiError

JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store"}
# Lets a card's script read these headers across origins (the card and the API never share an origin).
EXPOSE_HEADERS = {"Access-Control-Expose-Headers": "ETag, Retry-After, WWW-Authenticate"}


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return raw_json_response(json.dumps(payload, separators=(",", ":")).encode(), status, headers)


def raw_json_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    # Content-Type is `application/json` with no charset: JSON is UTF-8 by definition (RFC 8259), and it is what
    # the worker sends whatever charset we name, so the local host and Azure agree.
    return func.HttpResponse(body, status_code=status, headers={**EXPOSE_HEADERS, **(headers or {})}, mimetype=JSON)


def not_modified(headers: Mapping[str, str]) -> func.HttpResponse:
    # The worker gives every answer a content type (text/plain by default): a 304 carries the JSON one, so a cache
    # merging its headers into the stored answer keeps that answer's type.
    return func.HttpResponse(status_code=304, headers={**EXPOSE_HEADERS, **headers}, mimetype=JSON)


def error_response(error: ApiError) -> func.HttpResponse:
    return json_response(
        {"error": error.code, "message": error.message},
        status=error.status,
        headers={**NO_STORE, **error.headers},
    )
