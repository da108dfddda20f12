"""JSON responses, and the single place where a typed error becomes an HTTP answer."""

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from .errors import ApiError

NO_STORE = {"Cache-Control": "no-store"}
# Lets a card's script read these headers across origins (the card and the API never share an origin).
EXPOSE_HEADERS = {"Access-Control-Expose-Headers": "ETag, Retry-After, WWW-Authenticate"}


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return raw_json_response(json.dumps(payload, separators=(",", ":")).encode(), status, headers)


def raw_json_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        body,
        status_code=status,
        headers={**EXPOSE_HEADERS, **(headers or {})},
        mimetype="application/json",
        charset="utf-8",
    )


def not_modified(headers: Mapping[str, str]) -> func.HttpResponse:
    return func.HttpResponse(status_code=304, headers={**EXPOSE_HEADERS, **headers})


def error_response(error: ApiError) -> func.HttpResponse:
    return json_response(
        {"error": error.code, "message": error.message},
        status=error.status,
        headers={**NO_STORE, **error.headers},
    )
