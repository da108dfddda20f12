"""One request and response conversion for both ways the local host invokes a function.

The Functions host turns the ASP.NET request into an `RpcHttp` message (its `ToRpcHttp`) before the Python worker
sees it. `host_request` does the same to a werkzeug request. The host takes each header's and each query key's
`StringValues.ToString()`, which joins several values with "," and skips empty ones; so:

- header names lower-cased; a header sent several times arrives once, its non-empty values joined with ",";
- a query key sent several times arrives once, its non-empty values joined with "," (keys compared
  case-insensitively, the first spelling kept), and a key with no non-empty value does not arrive at all
  (`?token=` never reaches the function); the order of keys is kept;
- the body only when the request declares a `Content-Length` above 0 (a chunked body never arrives);
- the URL with its query string.

Then either the worker library turns that message into `azure.functions.HttpRequest` (Python 3.13+, see
`worker_host`), or `to_http_request` does it with the same converter of the `azure-functions` package the worker
calls. The answer goes back through that package's `HttpResponseConverter` on both paths (`from_http_response`):
the headers a function sets, and `content-type` from its mimetype when it set none.
"""

import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions import http as func_http
from azure.functions import meta
from werkzeug.wrappers import Request, Response

from shared.guard import Invocation


@dataclass(frozen=True)
class HostRequest:
    """What the Functions host hands the worker for an HTTP trigger (the fields of `RpcHttp` we use)."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str]
    route_params: dict[str, str]
    body: bytes | None  # None: the host sends no body
    # The W3C trace context the host hands the worker with the invocation (`InvocationRequest.trace_context`).
    trace_parent: str = ""
    trace_state: str = ""
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class HostResponse:
    """What the worker hands back: status, headers (as the function set them) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def to_werkzeug(self) -> Response:
        response = Response(self.body, status=self.status)
        response.headers.clear()  # werkzeug's default text/plain content type is not the function's
        for name, value in self.headers:
            response.headers.add(name, value)
        return response


def join_values(values: Iterable[str]) -> str:
    """.NET's `StringValues.ToString()`: the values joined with ",", empty ones skipped."""
    return ",".join(value for value in values if value)


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, list[str]]]:
    """Values by case-insensitive name (ASP.NET's header and query collections), keeping the first spelling."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for name, value in pairs:
        groups.setdefault(name.lower(), (name, []))[1].append(value)
    return groups


def join_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key: join_values(values) for key, (_, values) in _grouped(pairs).items()}


def join_query(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    joined = {name: join_values(values) for name, values in _grouped(pairs).values()}
    return {name: value for name, value in joined.items() if value}


def host_request(request: Request, body: bytes, route_params: Mapping[str, Any]) -> HostRequest:
    headers = join_headers(request.headers.items())
    trace_parent, trace_state = invocation_trace(headers)
    return HostRequest(
        method=request.method,
        url=request.url,
        headers=headers,
        query=join_query(request.args.items(multi=True)),
        route_params={name: str(value) for name, value in route_params.items()},
        body=body if body and (request.content_length or 0) > 0 else None,
        trace_parent=trace_parent,
        trace_state=trace_state,
    )


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def invocation_trace(headers: Mapping[str, str]) -> tuple[str, str]:
    """The trace parent (and state) of the host's own span for this invocation, as the host hands it to the worker:
    in the caller's trace when the request carries a valid W3C `traceparent`, else in a new trace."""
    match = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    valid = match is not None and match.group(1) != "0" * 32 and match.group(2) != "0" * 16
    trace_id = match.group(1) if valid and match is not None else secrets.token_hex(16)
    flags = match.group(3) if valid and match is not None else "01"
    state = headers.get("tracestate", "") if valid else ""
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}", state


def host_context(request: HostRequest, function_name: str, directory: str) -> func.Context:
    """The `context` the worker passes a function that takes one, when the local host calls it directly."""
    return Invocation(request.invocation_id, function_name, directory, request.trace_parent, request.trace_state)


def to_http_request(request: HostRequest) -> func.HttpRequest:
    """The `HttpRequest` the worker would build, through the same `azure-functions` converter."""

    def strings(values: Mapping[str, str]) -> dict[str, meta.Datum]:
        return {name: meta.Datum(type="string", value=value) for name, value in values.items()}

    datum = meta.Datum(
        type="http",
        value={
            "method": meta.Datum(type="string", value=request.method),
            "url": meta.Datum(type="string", value=request.url),
            "headers": strings(request.headers),
            "query": strings(request.query),
            "params": strings(request.route_params),
            "body": meta.Datum(type="bytes", value=request.body or b""),
        },
    )
    result: func.HttpRequest = func_http.HttpRequestConverter.decode(datum, trigger_metadata=None)
    return result


def from_http_response(response: func.HttpResponse) -> HostResponse:
    """The answer as the worker sends it to the host (`HttpResponseConverter.encode`)."""
    datum = func_http.HttpResponseConverter.encode(response, expected_type=None)
    value = datum.value
    headers = [(str(name), str(header.value)) for name, header in value["headers"].items()]
    return HostResponse(int(value["status_code"].value), headers, bytes(value["body"].value or b""))
