"""JSON responses, and the single place where a typed error becomes an HTTP answer."""

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from .errors import ApiError

NO_STORE = {"Cache-Control": "no-store"}


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return raw_json_response(json.dumps(payload, separators=(",", ":")).encode(), status, headers)


def raw_json_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        body, status_code=status, headers=dict(headers or {}), mimetype="application/json", charset="utf-8"
    )


def error_response(error: ApiError) -> func.HttpResponse:
    return json_response(
        {"error": error.code, "message": error.message},
        status=error.status,
        headers={**NO_STORE, **error.headers},
    )
