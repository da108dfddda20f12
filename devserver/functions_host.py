"""A local Azure Functions host for the Python v1 model, the way `func start` serves HTTP functions.

It reads every `<folder>/function.json`, routes `route` (default: the folder name) under host.json's
`extensions.http.routePrefix` (default `api`), restricts `methods`, calls `main` with a real
`azure.functions.HttpRequest`, turns the `HttpResponse` into the HTTP answer, and applies `Host.CORS`.
"""

import importlib
import inspect
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .wsgi import json_error

log = logging.getLogger("devserver.host")

MAX_BODY_BYTES = 10 * 1024 * 1024
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
CORS_ALLOW_HEADERS = "Authorization, accessToken, Content-Type, If-None-Match"
_ROUTE_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")
_CONVERTERS = {None: "string", "alpha": "string", "int": "int", "long": "int", "guid": "uuid", "float": "float"}


class FunctionAppError(Exception):
    """The app cannot start: the message names the file and the problem."""


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str  # e.g. "api/ValidateToken"
    methods: tuple[str, ...]
    main: Callable[..., Any]
    request_param: str


@dataclass
class FunctionApp:
    functions: list[HttpFunction]
    cors_origins: set[str] = field(default_factory=set)
    cors_credentials: bool = False
    url_map: Map = field(init=False)

    def __post_init__(self) -> None:
        rules: list[Rule] = []
        for function in self.functions:
            for path in _werkzeug_paths(function.route):
                rules.append(Rule(path, endpoint=function.name, methods=list(function.methods)))
        self.url_map = Map(rules, strict_slashes=False, merge_slashes=False)
        self._by_name = {function.name: function for function in self.functions}

    # --- WSGI --------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        response = self.dispatch(request)
        self._add_cors(request, response)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return self._preflight(request, adapter)
        try:
            endpoint, route_params = adapter.match()
        except NotFound:
            return _not_found(request)
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            return json_error(405, "method_not_allowed", f"Use {allowed}.", {"Allow": allowed})
        except HTTPException as exc:
            return json_error(exc.code or 400, "bad_request", exc.description or "Bad request.")
        return self.invoke(self._by_name[str(endpoint)], request, route_params)

    def invoke(self, function: HttpFunction, request: Request, route_params: Mapping[str, Any]) -> Response:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return json_error(413, "payload_too_large", f"Send at most {MAX_BODY_BYTES} bytes.")
        http_request = func.HttpRequest(
            method=request.method,
            url=request.url,
            headers=dict(request.headers.items()),
            params=dict(request.args.items()),
            route_params={name: str(value) for name, value in route_params.items()},
            body=body,
        )
        try:
            result = function.main(**{function.request_param: http_request})
        except Exception:
            # The real host answers 500 too; we log it as the worker would, without request details.
            log.exception("function %s raised", function.name)
            return json_error(500, "internal_error", "The function raised an exception; see the host's log.")
        if not isinstance(result, func.HttpResponse):
            log.error("function %s returned %s, not an HttpResponse", function.name, type(result).__name__)
            return json_error(500, "internal_error", "The function did not return an HttpResponse.")
        return _to_werkzeug(result)

    # --- CORS --------------------------------------------------------------------------------------------------

    def origin_allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.cors_origins or origin in self.cors_origins)

    def _preflight(self, request: Request, adapter: Any) -> Response:
        try:
            endpoint, _ = adapter.match(method=request.headers["Access-Control-Request-Method"].upper())
        except NotFound:
            return _not_found(request)
        except HTTPException:
            return json_error(405, "method_not_allowed", "The function does not accept that method.")
        response = Response(status=204)
        if self.origin_allowed(request.headers.get("Origin")):
            response.headers["Access-Control-Allow-Methods"] = ", ".join(self._by_name[str(endpoint)].methods)
            response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    def _add_cors(self, request: Request, response: Response) -> None:
        origin = request.headers.get("Origin")
        response.vary.add("Origin")
        if not self.origin_allowed(origin):
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in self.cors_origins else str(origin)
        if self.cors_credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"


# --- loading an app -----------------------------------------------------------------------------------------------


def load_app(root: Path, cors_origins: Iterable[str] = (), cors_credentials: bool = False) -> FunctionApp:
    """Discover and import every HTTP function under `root`; raises FunctionAppError naming what is wrong."""
    root = root.resolve()
    route_prefix = _route_prefix(root / "host.json")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    functions = [
        _load_function(path, route_prefix)
        for path in sorted(root.glob("*/function.json"))
        if not path.parent.name.startswith(".")
    ]
    if not functions:
        raise FunctionAppError(f"{root}: no function folders (a folder with function.json) were found")
    return FunctionApp(functions, {o.strip() for o in cors_origins if o.strip()}, cors_credentials)


def _route_prefix(host_json: Path) -> str:
    if not host_json.exists():
        return "api"
    try:
        host = json.loads(host_json.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise FunctionAppError(f"{host_json}: not valid JSON ({exc})") from None
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise FunctionAppError(f"{host_json}: extensions.http.routePrefix must be a string")
    return prefix.strip("/")


def _load_function(path: Path, route_prefix: str) -> HttpFunction:
    folder = path.parent
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FunctionAppError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("bindings"), list):
        raise FunctionAppError(f"{path}: needs a 'bindings' list")
    triggers = [b for b in config["bindings"] if isinstance(b, dict) and b.get("type") == "httpTrigger"]
    if len(triggers) != 1:
        raise FunctionAppError(f"{path}: needs exactly one binding of type 'httpTrigger'")
    trigger = triggers[0]
    param = trigger.get("name")
    if not isinstance(param, str) or not param:
        raise FunctionAppError(f"{path}: the httpTrigger binding needs a 'name'")
    outputs = [b for b in config["bindings"] if isinstance(b, dict) and b.get("type") == "http"]
    if not outputs or outputs[0].get("name") != "$return":
        raise FunctionAppError(f"{path}: needs an 'http' output binding named '$return'")
    methods = trigger.get("methods") or [m.lower() for m in ALL_METHODS]
    if not isinstance(methods, list) or not all(isinstance(m, str) and m.upper() in ALL_METHODS for m in methods):
        raise FunctionAppError(f"{path}: 'methods' must be a list of HTTP methods")

    script_file = config.get("scriptFile", "__init__.py")
    if not isinstance(script_file, str) or not (folder / script_file).is_file():
        raise FunctionAppError(f"{path}: scriptFile {script_file!r} does not exist in {folder.name}/")
    entry_point = config.get("entryPoint", "main")
    module_name = folder.name if script_file == "__init__.py" else f"{folder.name}.{Path(script_file).stem}"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise FunctionAppError(f"{folder / script_file}: import failed: {type(exc).__name__}: {exc}") from exc
    main = getattr(module, str(entry_point), None)
    if not callable(main):
        raise FunctionAppError(f"{path}: entry point {entry_point!r} is not a function in {script_file}")
    if param not in inspect.signature(main).parameters:
        raise FunctionAppError(f"{path}: {entry_point}() has no parameter {param!r} for the httpTrigger binding")

    route = trigger.get("route") or folder.name
    if not isinstance(route, str):
        raise FunctionAppError(f"{path}: 'route' must be a string")
    full_route = "/".join(part for part in (route_prefix, route.strip("/")) if part)
    return HttpFunction(folder.name, full_route, tuple(m.upper() for m in methods), main, param)


def _werkzeug_paths(route: str) -> list[str]:
    """Azure route templates ({id}, {id:int}, {id?}, {*rest}) as werkzeug rules; an optional part adds a rule."""
    paths = ["/" + route]
    while True:
        expanded = []
        changed = False
        for path in paths:
            match = _ROUTE_PARAM.search(path)
            if not match:
                expanded.append(path)
                continue
            changed = True
            catch_all, name, constraint, optional = match.groups()
            converter = "path" if catch_all else _CONVERTERS.get(constraint, "string")
            expanded.append(path[: match.start()] + f"<{converter}:{name}>" + path[match.end() :])
            if optional:
                expanded.append(path[: match.start()].rstrip("/") + path[match.end() :] or "/")
        paths = expanded
        if not changed:
            return paths


def _not_found(request: Request) -> Response:
    return json_error(404, "not_found", f"No function answers {request.path}.")


def _to_werkzeug(result: func.HttpResponse) -> Response:
    response = Response(result.get_body(), status=result.status_code)
    for name, value in result.headers.items():
        response.headers[name] = value
    if result.mimetype and "Content-Type" not in result.headers and result.status_code not in (204, 304):
        content_type = result.mimetype
        if result.charset and (result.mimetype.startswith("text/") or result.mimetype.endswith("json")):
            content_type += f"; charset={result.charset}"
        response.headers["Content-Type"] = content_type
    return response
