"""A local Azure Functions host for Python HTTP functions, the way `func start` serves them.

It reads every `<folder>/function.json` (the v1 model), or, when the app root holds `function_app.py` (the v2
model), the functions its one FunctionApp indexes; routes `route` (v1 default: the folder name; v2: the function
name; matched case-insensitively as Azure does) under host.json's `extensions.http.routePrefix` (default `api`),
restricts `methods`, converts the request as the Functions host does (`conversion`), invokes the function, turns
its `HttpResponse` into the HTTP answer, and applies `Host.CORS`. On Python 3.13+ every invocation goes through
Microsoft's worker library for the model (`worker_host`); on 3.11 and 3.12 the function (v1: `main`) is called
directly with the same converted request.
"""

import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from . import worker_host
from .conversion import from_http_response, host_context, host_request, to_http_request
from .wsgi import json_error

log = logging.getLogger("devserver.host")

MAX_BODY_BYTES = 10 * 1024 * 1024
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
CORS_ALLOW_HEADERS = "Authorization, accessToken, Content-Type, If-None-Match"
_ROUTE_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")
_CONVERTERS = {None: "string", "alpha": "string", "int": "int", "long": "int", "guid": "uuid", "float": "float"}
_LITERAL_PREFIX = "_literal_"
INVOKE_MODES = ("auto", "direct", "worker")
SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"  # the v2 model's script, as the worker reads it
DEFAULT_SCRIPT_FILE = "function_app.py"
REPO_ROOT = Path(__file__).resolve().parent.parent


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
    takes_context: bool = False  # main has a `context` parameter: the host's func.Context (trace parent) is passed
    directory: str = ""


@dataclass
class FunctionApp:
    functions: list[HttpFunction]
    cors_origins: set[str] = field(default_factory=set)
    cors_credentials: bool = False
    worker: "worker_host.WorkerHost | None" = None
    model: str = "v1"  # "v2": indexed from function_app.py
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

    @property
    def invoked_how(self) -> str:
        """How each request reaches the functions, for the banner."""
        if self.worker is not None:
            return f"through Microsoft's worker library ({self.worker.distribution})"
        if self.model == "v2":
            return "by calling the functions the app's get_functions() indexed directly"
        return "by calling main directly"

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
        arguments: dict[str, Any] = {function.request_param: to_http_request(converted)}
        if function.takes_context:  # as the worker does for a parameter named `context`
            arguments["context"] = host_context(converted, function.name, function.directory)
        try:
            result = function.main(**arguments)
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

    A root holding the v2 model's script (`v2_script`) is a v2 app, indexed from its one FunctionApp; otherwise
    every `<folder>/function.json` is a v1 function (as the proxy worker picks its library in Azure).
    `invoke`: "worker" runs functions through Microsoft's worker library for the model (Python 3.13+ with it
    installed), "direct" calls them (v1: `main`; v2: the functions `get_functions()` indexed), "auto" picks the
    worker whenever it can run here.
    """
    root = root.resolve()
    route_prefix = _route_prefix(root / "host.json")
    if invoke not in INVOKE_MODES:
        raise FunctionAppError(f"invoke must be one of {', '.join(INVOKE_MODES)}, not {invoke!r}")
    script = v2_script(root)
    library = worker_host.LIBRARY if script is None else worker_host.LIBRARY_V2
    if script is None:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    else:
        _first_on_sys_path(root)  # the library imports the script by its bare name, as the worker does
        if str(REPO_ROOT) not in sys.path:  # this repository's `shared`, for an app that has no copy of its own
            sys.path.append(str(REPO_ROOT))
    use_worker = invoke == "worker" or (invoke == "auto" and sys.version_info >= (3, 13))
    if use_worker and not worker_host.available(library):
        raise FunctionAppError(
            f"running functions through {worker_host.DISTRIBUTIONS[library]} needs Python 3.13+ with it installed"
            " (pip install -r requirements-dev.txt)"
        )
    worker = worker_host.WorkerHost(root, library) if use_worker else None
    if script is not None:
        functions = _load_v2_app(script, route_prefix, worker)
        return FunctionApp(
            functions, {o.strip() for o in cors_origins if o.strip()}, cors_credentials, worker, model="v2"
        )
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


def v2_script(root: Path) -> Path | None:
    """The v2 model's script in `root` when there is one: the app setting PYTHON_SCRIPT_FILE_NAME, by default
    `function_app.py` (the proxy worker's own test for which library to load)."""
    script = root / (os.environ.get(SCRIPT_FILE_SETTING) or DEFAULT_SCRIPT_FILE)
    return script if script.is_file() else None


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


def _http_bindings(where: str, bindings: list[Any]) -> tuple[dict[str, Any], str, list[str]]:
    """The httpTrigger binding, its parameter name and its methods; both models' bindings (function.json's, and
    the JSON the v2 decorators record) have the same shape."""
    triggers = [b for b in bindings if isinstance(b, dict) and b.get("type") == "httpTrigger"]
    if len(triggers) != 1:
        raise FunctionAppError(f"{where}: needs exactly one binding of type 'httpTrigger'")
    trigger = triggers[0]
    param = trigger.get("name")
    if not isinstance(param, str) or not param:
        raise FunctionAppError(f"{where}: the httpTrigger binding needs a 'name'")
    outputs = [b for b in bindings if isinstance(b, dict) and b.get("type") == "http"]
    if not outputs or outputs[0].get("name") != "$return":
        raise FunctionAppError(f"{where}: needs an 'http' output binding named '$return'")
    methods = trigger.get("methods") or [m.lower() for m in ALL_METHODS]
    if not isinstance(methods, list) or not all(isinstance(m, str) and m.upper() in ALL_METHODS for m in methods):
        raise FunctionAppError(f"{where}: 'methods' must be a list of HTTP methods")
    return trigger, param, methods


def _full_route(where: str, trigger: Mapping[str, Any], default: str, route_prefix: str) -> str:
    route = trigger.get("route") or default
    if not isinstance(route, str):
        raise FunctionAppError(f"{where}: 'route' must be a string")
    return "/".join(part for part in (route_prefix, route.strip("/")) if part)


def _load_function(path: Path, route_prefix: str, worker: "worker_host.WorkerHost | None" = None) -> HttpFunction:
    folder = path.parent
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FunctionAppError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("bindings"), list):
        raise FunctionAppError(f"{path}: needs a 'bindings' list")
    trigger, param, methods = _http_bindings(str(path), config["bindings"])

    script_file = config.get("scriptFile", "__init__.py")
    if not isinstance(script_file, str) or not (folder / script_file).is_file():
        raise FunctionAppError(f"{path}: scriptFile {script_file!r} does not exist in {folder.name}/")
    entry_point = config.get("entryPoint", "main")
    full_route = _full_route(str(path), trigger, folder.name, route_prefix)
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
    parameters = inspect.signature(main).parameters
    if param not in parameters:
        raise FunctionAppError(f"{path}: {entry_point}() has no parameter {param!r} for the httpTrigger binding")
    methods_upper = tuple(m.upper() for m in methods)
    return HttpFunction(folder.name, full_route, methods_upper, main, param, "context" in parameters, str(folder))


# --- the v2 (decorator) model -------------------------------------------------------------------------------------


def _load_v2_app(script: Path, route_prefix: str, worker: "worker_host.WorkerHost | None") -> list[HttpFunction]:
    """Every function of the script's FunctionApp, indexed by the v2 worker library or, direct, by the app itself.

    A FunctionApp can be indexed once (a second `get_functions()` refuses every name as a duplicate), so each load
    imports the script anew, as a new worker process would.
    """
    sys.modules.pop(script.stem, None)
    importlib.invalidate_caches()
    if worker is None:
        return [
            _v2_function(name, script, bindings, route_prefix, user_function)
            for name, bindings, user_function in _index_directly(script)
        ]
    try:
        try:
            worker.start()  # WorkerInitRequest: the library imports the script and indexes it here
            indexed = worker.index()  # FunctionsMetadataRequest
        except worker_host.WorkerError as exc:
            raise FunctionAppError(f"{script}: {exc}") from None
        functions = []
        for one in indexed:
            function = _v2_function(one.name, script, one.bindings, route_prefix, None)
            try:
                worker.load_indexed(one, function.request_param)
            except worker_host.WorkerError as exc:
                raise FunctionAppError(f"{script} ({one.name}): {exc}") from None
            functions.append(function)
    except BaseException:
        worker.stop()
        raise
    if not functions:
        worker.stop()
        raise FunctionAppError(f"{script}: its FunctionApp has no functions")
    return functions


def _v2_function(
    name: str, script: Path, bindings: list[Any], route_prefix: str, user_function: Callable[..., Any] | None
) -> HttpFunction:
    where = f"{script} ({name})"
    trigger, param, methods = _http_bindings(where, bindings)
    route = _full_route(where, trigger, name, route_prefix)
    takes_context = False
    if user_function is not None:
        _check_v2_signature(where, user_function, bindings)
        takes_context = "context" in inspect.signature(user_function).parameters
    methods_upper = tuple(m.upper() for m in methods)
    return HttpFunction(name, route, methods_upper, user_function, param, takes_context, str(script.parent))


def _index_directly(script: Path) -> list[tuple[str, list[Any], Callable[..., Any]]]:
    """What the v2 library's indexing reads: the script's one top-level FunctionRegister, its `get_functions()`,
    and each function's name, bindings (JSON) and user function."""
    module = _import_script(script)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if not apps:
        raise FunctionAppError(f"{script}: no top-level function app (app = func.FunctionApp(...)) was found")
    if len(apps) > 1:
        raise FunctionAppError(f"{script}: more than one top-level function app; the worker indexes exactly one")
    try:
        indexed = apps[0].get_functions()
    except ValueError as exc:
        raise FunctionAppError(f"{script}: {exc}") from None
    if not indexed:
        raise FunctionAppError(f"{script}: its FunctionApp has no functions")
    found = []
    for function in indexed:
        user_function = function.get_user_function()
        name = function.get_function_name() or user_function.__name__
        found.append((name, [json.loads(raw) for raw in function.get_raw_bindings()], user_function))
    return found


def _import_script(script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(script.stem, script)
    if spec is None or spec.loader is None:
        raise FunctionAppError(f"{script}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[script.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[script.stem]
        raise FunctionAppError(f"{script}: import failed: {type(exc).__name__}: {exc}") from exc
    return module


def _check_v2_signature(where: str, user_function: Callable[..., Any], bindings: list[Any]) -> None:
    """The worker's check at indexing: every parameter `inspect.signature` finds (following `__wrapped__`) is a
    binding's name (or `context`), and every binding but `$return` is a parameter."""
    params = set(inspect.signature(user_function).parameters) - {"context"}
    bound = {str(b.get("name")) for b in bindings if isinstance(b, dict) and b.get("name") != "$return"}
    if params - bound:
        raise FunctionAppError(
            f"{where}: parameters declared in Python but not in the decorators: {sorted(params - bound)}"
        )
    if bound - params:
        raise FunctionAppError(f"{where}: bindings with no parameter in Python: {sorted(bound - params)}")


def _first_on_sys_path(path: Path) -> None:
    while str(path) in sys.path:
        sys.path.remove(str(path))
    sys.path.insert(0, str(path))


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
