"""Invoke functions through Microsoft's Python worker libraries (Python 3.13+).

On Python 3.13 the worker Azure runs (its "proxy worker") receives the host's gRPC messages and hands them to one
of two libraries: `azure-functions-runtime` when the app root holds the v2 model's script (`function_app.py`, or
the app setting PYTHON_SCRIPT_FILE_NAME), `azure-functions-runtime-v1` otherwise. We play the host and the proxy
worker's part for either:

- v1 (function.json): start the library's thread pool, send `WorkerInitRequest`, one `FunctionLoadRequest` per
  function folder (metadata from function.json); the library loads each function as `__app__.<Folder>` and checks
  its signature against the bindings.
- v2 (decorators): thread pool, `WorkerInitRequest` (the library imports the script and indexes its one
  `FunctionApp` there, checking each function's signature against its decorators), `FunctionsMetadataRequest`
  (the indexed functions: name, id, bindings as JSON), then one `FunctionLoadRequest` per function with the
  metadata the library returned, as the host sends it back.

Then one `InvocationRequest` per HTTP request carrying an `RpcHttp`: the library converts it to
`azure.functions.HttpRequest`, runs the function on its thread pool and converts the `HttpResponse` back. Not
covered: the .NET host itself, gRPC on the wire, bindings other than HTTP.

The generated protobuf classes come from the v1 library's wheel, which installs them as a top-level `tests.protos`
package (the v2 library ships none: the proxy worker hands it the same FunctionRpc classes). That name belongs to
this repository's own `tests` package here, so they are loaded from the installed files under a private module name
instead (`load_protos`); nothing of Microsoft's is copied into the repository.
"""

import asyncio
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
import threading
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .conversion import HostRequest, HostResponse

LIBRARY = "azure_functions_runtime_v1"  # the v1 model's library; it also carries the protobuf classes
LIBRARY_V2 = "azure_functions_runtime"  # the v2 model's
DISTRIBUTION = "azure-functions-runtime-v1"
DISTRIBUTIONS = {LIBRARY: DISTRIBUTION, LIBRARY_V2: "azure-functions-runtime"}
PROTOS_MODULE = "_devserver_function_rpc"  # private name for the wheel's tests/protos package
HOST_VERSION = "4.0.0-devserver"
RPC_LOG_KEEP = 10_000

log = logging.getLogger("devserver.worker")


class WorkerError(Exception):
    """The worker library answered with a failure: the message is the worker's own."""


def available(library: str = LIBRARY) -> bool:
    """True when this interpreter should (3.13+) and can run functions through `library` (the v1 model's by
    default); the protobuf classes always come from the v1 library's wheel."""
    return sys.version_info >= (3, 13) and all(
        importlib.util.find_spec(name) is not None for name in {library, LIBRARY}
    )


def load_protos() -> ModuleType:
    """The generated FunctionRpc classes shipped in the library's wheel, imported without the name `tests`."""
    if PROTOS_MODULE in sys.modules:
        return sys.modules[PROTOS_MODULE]
    init = Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file("tests/protos/__init__.py")))
    if not init.is_file():
        raise WorkerError(f"{DISTRIBUTION} has no tests/protos package at {init.parent}")
    spec = importlib.util.spec_from_file_location(PROTOS_MODULE, init, submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        raise WorkerError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PROTOS_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PROTOS_MODULE]
        raise
    return module


@dataclass
class WorkerRequest:
    """The envelope the proxy worker passes to the library: the streaming message and its properties."""

    name: str
    request: Any
    properties: dict[str, Any]


class RpcLogHandler(logging.Handler):
    """What the proxy worker does with every log record once its gRPC channel is up: an `RpcLog` message.

    Kept (bounded) so tests can check what would travel to the host; the records still reach the console through
    the root logger's other handlers, as `func start` shows worker logs.
    """

    def __init__(self, protos: ModuleType) -> None:
        super().__init__(level=logging.DEBUG)
        self.protos = protos
        self.messages: deque[Any] = deque(maxlen=RPC_LOG_KEEP)

    def emit(self, record: logging.LogRecord) -> None:
        rpc_log = self.protos.RpcLog
        level = (
            rpc_log.Critical
            if record.levelno >= logging.CRITICAL
            else rpc_log.Error
            if record.levelno >= logging.ERROR
            else rpc_log.Warning
            if record.levelno >= logging.WARNING
            else rpc_log.Information
            if record.levelno >= logging.INFO
            else rpc_log.Debug
        )
        system = record.name.startswith(("azure_functions", "azure.functions"))
        category = rpc_log.RpcLogCategory.Value("System" if system else "User")
        try:
            message = self.format(record)
        except Exception:  # noqa: BLE001 - a broken record must not break the invocation
            message = str(record.msg)
        self.messages.append(rpc_log(level=level, message=message, category=record.name, log_category=category))


@dataclass(frozen=True)
class LoadedFunction:
    function_id: str
    binding_name: str


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the v2 library's FunctionsMetadataResponse describes it."""

    name: str
    function_id: str
    bindings: list[dict[str, Any]]  # its raw_bindings, parsed: the JSON function.json would hold
    metadata: Any  # the RpcFunctionMetadata itself, sent back in the FunctionLoadRequest


class WorkerHost:
    """A worker library on its own event loop thread; `invoke` may be called from any request thread.

    Each library keeps its thread pool and function registry in module globals (one worker per process, as in
    Azure), so only one WorkerHost per library may run at a time in a process.
    """

    _running: "dict[str, WorkerHost]" = {}  # noqa: RUF012 - one per library, shared by design
    _running_lock = threading.Lock()

    def __init__(self, app_root: Path, library: str = LIBRARY) -> None:
        if library not in DISTRIBUTIONS:
            raise WorkerError(f"unknown worker library {library!r}")
        self.app_root = app_root
        self.library_name = library
        self.distribution = DISTRIBUTIONS[library]
        self.library: Any = importlib.import_module(library)
        self.protos = load_protos()
        self.rpc_logs = RpcLogHandler(self.protos)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._functions: dict[str, LoadedFunction] = {}

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        if self._loop is None:
            coroutine.close()
            raise WorkerError("the worker is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def start(self) -> None:
        """Thread pool first (as the proxy worker does before any request), then WorkerInitRequest."""
        with WorkerHost._running_lock:
            if self.library_name in WorkerHost._running:
                raise WorkerError(
                    f"a worker is already running {self.distribution} in this process (the library holds global state)"
                )
            WorkerHost._running[self.library_name] = self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="functions-worker", daemon=True)
        self._thread.start()
        logging.getLogger().addHandler(self.rpc_logs)
        self.library.start_threadpool_executor()
        protos = self.protos
        message = protos.StreamingMessage(
            request_id=str(uuid.uuid4()),
            worker_init_request=protos.WorkerInitRequest(
                host_version=HOST_VERSION,
                function_app_directory=str(self.app_root),
                worker_directory=str(Path(self.library.__file__).parent),
            ),
        )
        response = self._run(
            self.library.worker_init_request(
                WorkerRequest("WorkerInitRequest", message, {"protos": protos, "host": "127.0.0.1"})
            )
        )
        self._check(response.result, "worker init")

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.rpc_logs)
        with WorkerHost._running_lock:
            if WorkerHost._running.get(self.library_name) is not self:
                return
            del WorkerHost._running[self.library_name]
        self.library.stop_threadpool_executor()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
        self._loop = self._thread = None

    def load(self, name: str, folder: Path, config: Mapping[str, Any]) -> None:
        """One FunctionLoadRequest with the metadata the host reads from function.json."""
        protos = self.protos
        directions = {"in": protos.BindingInfo.Direction.Value("in"), "out": protos.BindingInfo.Direction.Value("out")}
        bindings = {}
        trigger_name = ""
        for binding in config.get("bindings", []):
            direction = str(binding.get("direction", "in"))
            bindings[str(binding["name"])] = protos.BindingInfo(
                type=str(binding["type"]), direction=directions.get(direction, directions["in"])
            )
            if binding.get("type") == "httpTrigger":
                trigger_name = str(binding["name"])
        function_id = str(uuid.uuid4())
        metadata = protos.RpcFunctionMetadata(
            name=name,
            function_id=function_id,
            directory=str(folder),
            script_file=str(folder / str(config.get("scriptFile", "__init__.py"))),
            entry_point=str(config.get("entryPoint", "main")),
            bindings=bindings,
            language="python",
        )
        message = protos.StreamingMessage(
            request_id=str(uuid.uuid4()),
            function_load_request=protos.FunctionLoadRequest(function_id=function_id, metadata=metadata),
        )
        response = self._run(self.library.function_load_request(WorkerRequest("FunctionsLoadRequest", message, {})))
        self._check(response.result, "the worker could not load the function")
        self._functions[name] = LoadedFunction(function_id, trigger_name)

    def index(self) -> list[IndexedFunction]:
        """The v2 library's FunctionsMetadataRequest: the functions it indexed at WorkerInitRequest."""
        protos = self.protos
        message = protos.StreamingMessage(
            request_id=str(uuid.uuid4()), functions_metadata_request=protos.FunctionsMetadataRequest()
        )
        response = self._run(
            self.library.functions_metadata_request(WorkerRequest("WorkerMetadataRequest", message, {}))
        )
        self._check(response.result, "the worker could not index the function app")
        indexed = []
        for metadata in response.function_metadata_results:
            try:
                bindings = [json.loads(raw) for raw in metadata.raw_bindings]
            except ValueError as exc:
                raise WorkerError(f"{metadata.name}: the worker sent bindings that are not JSON ({exc})") from None
            indexed.append(IndexedFunction(metadata.name, metadata.function_id, bindings, metadata))
        return indexed

    def load_indexed(self, function: IndexedFunction, binding_name: str) -> None:
        """One FunctionLoadRequest for a function the v2 library indexed, with the metadata it returned."""
        protos = self.protos
        message = protos.StreamingMessage(
            request_id=str(uuid.uuid4()),
            function_load_request=protos.FunctionLoadRequest(
                function_id=function.function_id, metadata=function.metadata
            ),
        )
        response = self._run(self.library.function_load_request(WorkerRequest("FunctionLoadRequest", message, {})))
        self._check(response.result, "the worker could not load the function")
        self._functions[function.name] = LoadedFunction(function.function_id, binding_name)

    def invoke(self, name: str, request: HostRequest) -> HostResponse:
        """One InvocationRequest; raises RuntimeError with the worker's message when the function failed."""
        protos = self.protos
        function = self._functions[name]
        http = protos.RpcHttp(
            method=request.method,
            url=request.url,
            headers=request.headers,
            query=request.query,
            params=request.route_params,
        )
        if request.body is not None:
            http.body.CopyFrom(protos.TypedData(bytes=request.body))
        message = protos.StreamingMessage(
            request_id=str(uuid.uuid4()),
            invocation_request=protos.InvocationRequest(
                invocation_id=request.invocation_id,
                function_id=function.function_id,
                input_data=[protos.ParameterBinding(name=function.binding_name, data=protos.TypedData(http=http))],
                trace_context={"trace_parent": request.trace_parent, "trace_state": request.trace_state},
            ),
        )
        response = self._run(self.library.invocation_request(WorkerRequest("WorkerInvRequest", message, {})))
        self._check(response.result, f"{name} failed")
        answer = response.return_value
        if answer.WhichOneof("data") != "http":
            raise RuntimeError(f"{name} returned {answer.WhichOneof('data')}, not an HTTP response")
        body = answer.http.body
        kind = body.WhichOneof("data")
        content = body.bytes if kind == "bytes" else body.string.encode() if kind == "string" else b""
        return HostResponse(int(answer.http.status_code or 200), list(answer.http.headers.items()), content)

    def _check(self, result: Any, what: str) -> None:
        if result.status != self.protos.StatusResult.Success:
            raise WorkerError(f"{what}: {result.exception.message}")
