"""A local Azure Functions host for the Python v1 model, the way `func start` serves HTTP functions.

It reads every `<folder>/function.json`, routes `route` (default: the folder name, matched case-insensitively as
Azure does) under host.json's `extensions.http.routePrefix` (default `api`), restricts `methods`, converts the
request as the Functions host does (`conversion`), invokes the function, turns its `HttpResponse` into the HTTP
answer, and applies `Host.CORS`. On Python 3.13+ every invocation goes through Microsoft's worker library
(`worker_host`); on 3.11 and 3.12 `main` is called directly with the same converted request.
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
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from . import worker_host
from .conversion import from_http_response, host_request, to_http_request
from .wsgi import json_error

log = logging.getLogger("devserver.host")

MAX_BODY_BYTES = 10 * 1024 * 1024
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
CORS_ALLOW_HEADERS = "Authorization, accessToken, Content-Type, If-None-Match"
_ROUTE_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")
_CONVERTERS = {None: "string", "alpha": "string", "int": "int", "long": "int", "guid": "uuid", "float": "float"}
_LITERAL_PREFIX = "_literal_"
INVOKE_MODES = ("auto", "direct", "worker")


class _Literal(BaseConverter):
    """A static route segment matched case-insensitively (ASP.NET routing ignores case)."""

    def __init__(self, url_map: Map, literal: str) -> None:
        super().__init__(url_map)
        self.regex = f"(?i:{re.escape(literal)})"


class FunctionAppError(Exception):
    """The app cannot start: the message names the file and the problem."""


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str  # e.g. "api/ValidateToken"
    methods: tuple[str, ...]
    main: Callable[..., Any] | None  # None when the worker library loads and runs it
    request_param: str


@dataclass
class FunctionApp:
    functions: list[HttpFunction]
    cors_origins: set[str] = field(default_factory=set)
    cors_credentials: bool = False
    worker: "worker_host.WorkerHost | None" = None
    url_map: Map = field(init=False)

    def __post_init__(self) -> None:
        rules: list[Rule] = []
        for function in self.functions:
            for path in _werkzeug_paths(function.route):
                rules.append(Rule(_case_insensitive(path), endpoint=function.name, methods=list(function.methods)))
        self.url_map = Map(rules, strict_slashes=False, merge_slashes=False, converters={"literal": _Literal})
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
        params = {name: value for name, value in route_params.items() if not name.startswith(_LITERAL_PREFIX)}
        return self.invoke(self._by_name[str(endpoint)], request, params)

    @property
    def invoked_through(self) -> str:
        return "worker" if self.worker is not None else "direct"

    def invoke(self, function: HttpFunction, request: Request, route_params: Mapping[str, Any]) -> Response:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return json_error(413, "payload_too_large", f"Send at most {MAX_BODY_BYTES} bytes.")
        converted = host_request(request, body, route_params)
        if self.worker is not None:
            try:
                return self.worker.invoke(function.name, converted).to_werkzeug()
            except Exception as exc:  # noqa: BLE001 - any failure is the host's 500, as in Azure
                # The worker's own message (with the traceback) goes to the log, never to the caller.
                log.error("function %s failed in the worker: %s", function.name, exc)
                return json_error(500, "internal_error", "The function raised an exception; see the host's log.")
        if function.main is None:
            raise FunctionAppError(f"{function.name} was loaded by the worker library, which is not running")
        try:
            result = function.main(**{function.request_param: to_http_request(converted)})
        except Exception:
            # The real host answers 500 too; we log it as the worker would, without request details.
            log.exception("function %s raised", function.name)
            return json_error(500, "internal_error", "The function raised an exception; see the host's log.")
        if not isinstance(result, func.HttpResponse):
            log.error("function %s returned %s, not an HttpResponse", function.name, type(result).__name__)
            return json_error(500, "internal_error", "The function did not return an HttpResponse.")
        return from_http_response(result).to_werkzeug()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()

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


def load_app(
    root: Path, cors_origins: Iterable[str] = (), cors_credentials: bool = False, invoke: str = "auto"
) -> FunctionApp:
    """Discover and load every HTTP function under `root`; raises FunctionAppError naming what is wrong.

    `invoke`: "worker" runs functions through Microsoft's worker library (Python 3.13+ with it installed),
    "direct" calls `main`, "auto" picks the worker whenever it can run here.
    """
    root = root.resolve()
    route_prefix = _route_prefix(root / "host.json")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if invoke not in INVOKE_MODES:
        raise FunctionAppError(f"invoke must be one of {', '.join(INVOKE_MODES)}, not {invoke!r}")
    use_worker = invoke == "worker" or (invoke == "auto" and sys.version_info >= (3, 13))
    if use_worker and not worker_host.available():
        raise FunctionAppError(
            f"running functions through {worker_host.DISTRIBUTION} needs Python 3.13+ with it installed"
            " (pip install -r requirements-dev.txt)"
        )
    worker = worker_host.WorkerHost(root) if use_worker else None
    paths = [path for path in sorted(root.glob("*/function.json")) if not path.parent.name.startswith(".")]
    if not paths:
        raise FunctionAppError(f"{root}: no function folders (a folder with function.json) were found")
    try:
        if worker is not None:
            try:
                worker.start()
            except worker_host.WorkerError as exc:
                raise FunctionAppError(str(exc)) from None
        functions = [_load_function(path, route_prefix, worker) for path in paths]
    except BaseException:
        if worker is not None:
            worker.stop()
        raise
    return FunctionApp(functions, {o.strip() for o in cors_origins if o.strip()}, cors_credentials, worker)


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


def _load_function(  # noqa: PLR0912 - one check per function.json rule, each with its own message
    path: Path, route_prefix: str, worker: "worker_host.WorkerHost | None" = None
) -> HttpFunction:
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
    route = trigger.get("route") or folder.name
    if not isinstance(route, str):
        raise FunctionAppError(f"{path}: 'route' must be a string")
    full_route = "/".join(part for part in (route_prefix, route.strip("/")) if part)
    if worker is not None:
        try:
            worker.load(folder.name, folder, config)
        except worker_host.WorkerError as exc:
            raise FunctionAppError(f"{path}: {exc}") from None
        return HttpFunction(folder.name, full_route, tuple(m.upper() for m in methods), None, param)
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


def _case_insensitive(path: str) -> str:
    """Each static segment of a werkzeug rule as a case-insensitive literal; segments with parameters stay."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment and "<" not in segment:
            segments[index] = f"<literal({json.dumps(segment)}):{_LITERAL_PREFIX}{index}>"
    return "/".join(segments)
