"""The v2 example app (examples/v2) on the local host: through Microsoft's v2 worker library
(`azure-functions-runtime`: WorkerInitRequest indexes, FunctionsMetadataRequest lists, FunctionLoadRequest,
InvocationRequest) on Python 3.13+, and indexed directly (`get_functions()`) everywhere; `@protected` under
`@app.route` is what indexing accepts, and the ways of getting it wrong are refused at startup, as in Azure.
Kaizala's users/me is a real server on 127.0.0.1."""

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client

import shared
from devserver import worker_host
from devserver.conversion import HostRequest
from devserver.functions_host import FunctionApp, FunctionAppError, load_app
from tests.devserver_process import devserver
from tests.helpers import SECRETS, Reply, Upstream, identity_payload, make_jwt, upstream_server

ROOT = Path(__file__).resolve().parent.parent
V2_ROOT = ROOT / "examples" / "v2"
WORKER = worker_host.available() and worker_host.available(worker_host.LIBRARY_V2)
needs_worker = pytest.mark.skipif(not WORKER, reason="the worker library runs on Python 3.13+ only")
MODES = ["direct", pytest.param("worker", marks=needs_worker)]
USER = identity_payload("v2-user")


@pytest.fixture(scope="module")
def kaizala() -> Iterator[Upstream]:
    with upstream_server(lambda _n, _t: Reply(body=USER)) as up:
        yield up


@pytest.fixture(autouse=True)
def kaizala_url(monkeypatch: pytest.MonkeyPatch, kaizala: Upstream) -> None:
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", kaizala.url)


_opened: list[FunctionApp] = []


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    """Each test's apps are closed after it: the library holds one worker per process."""
    yield
    while _opened:
        _opened.pop().close()


def app_of(root: Path, invoke: str) -> FunctionApp:
    app = load_app(root, invoke=invoke)
    _opened.append(app)
    return app


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_jwt()}"}


@pytest.mark.parametrize("mode", MODES)
def test_the_example_serves_the_blueprint_and_its_own_protected_route(mode: str) -> None:
    app = app_of(V2_ROOT, mode)
    assert {f.name: f.route for f in app.functions} == {
        "ValidateToken": "api/ValidateToken",
        "ProtectedApi": "api/ProtectedApi",
        "hello": "api/Hello",
    }
    client = Client(app)
    shared.clear_cache()
    hello = client.get("/api/Hello", headers=bearer())
    assert (hello.status_code, hello.get_json()) == (200, {"hello": USER["name"]})
    assert client.get("/api/Hello").status_code == 401  # its own route is guarded too
    assert client.get("/api/ValidateToken", headers=bearer()).get_json()["id"] == "v2-user"
    assert client.get("/api/ProtectedApi?limit=1", headers=bearer()).get_json()["count"] == 1


@needs_worker
def test_every_function_is_indexed_and_invoked_by_the_v2_library() -> None:
    app = app_of(V2_ROOT, "worker")
    assert app.worker is not None
    assert app.worker.distribution == "azure-functions-runtime"
    assert all(function.main is None for function in app.functions)  # the library imported and runs them
    before = len(app.worker.rpc_logs.messages)
    for name in ("ValidateToken", "ProtectedApi", "hello"):
        shared.clear_cache()
        request = HostRequest(
            "GET", f"http://localhost/api/{name}", {"authorization": bearer()["Authorization"]}, {}, {}, None
        )
        assert app.worker.invoke(name, request).status == 200, name
    logged = [message.message for message in list(app.worker.rpc_logs.messages)[before:]]
    for name in ("ValidateToken", "ProtectedApi", "hello"):
        assert f"Function name: {name}, Function Type: sync" in logged  # the library's own line per invocation
    assert not [message for message in logged for value in SECRETS if value in message]


@needs_worker
def test_a_v1_and_a_v2_worker_run_side_by_side_but_one_of_each() -> None:
    """Each library keeps its registry and thread pool in module globals: one worker per library per process."""
    v2 = app_of(V2_ROOT, "worker")
    v1 = app_of(ROOT, "worker")
    with pytest.raises(FunctionAppError, match="already running azure-functions-runtime in this process"):
        load_app(V2_ROOT, invoke="worker")
    shared.clear_cache()
    assert Client(v1).get("/api/ValidateToken", headers=bearer()).status_code == 200
    assert Client(v2).get("/api/ValidateToken", headers=bearer()).status_code == 200


HEADER = """
import functools
import azure.functions as func
from shared import Identity, json_response, protected

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
"""
MISTAKES = {
    "unguarded": """
        @app.route(route="Who")
        def who(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
            return json_response({"id": identity.id})
    """,
    "guard above the route": """
        @protected
        @app.route(route="Who")
        def who(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
            return json_response({"id": identity.id})
    """,
    "a wrapper that keeps __wrapped__": """
        def guarded(handler):
            @functools.wraps(handler)
            def main(req: func.HttpRequest) -> func.HttpResponse:
                return handler(req, None)
            return main

        @app.route(route="Who")
        @guarded
        def who(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
            return json_response({"id": identity.id})
    """,
}


def write_app(root: Path, functions: str) -> None:
    (root / "host.json").write_text(json.dumps({"version": "2.0"}))
    (root / "function_app.py").write_text(HEADER + textwrap.dedent(functions))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_handler_whose_identity_parameter_shows_is_refused_at_startup(tmp_path, mode: str, mistake: str) -> None:
    """The worker matches every parameter it sees to a binding: `identity` has none, so a v2 app whose guard does
    not hide it fails indexing (in Azure: no functions at all), rather than serving unguarded."""
    write_app(tmp_path, MISTAKES[mistake])
    with pytest.raises(FunctionAppError) as failure:
        app_of(tmp_path, mode)
    assert "function_app.py" in str(failure.value)
    expected = "declared in Python but not in the function definition" if mode == "worker" else "not in the decorators"
    assert expected in str(failure.value)
    assert "identity" in str(failure.value)


@pytest.mark.parametrize("mode", MODES)
def test_protected_under_the_route_is_indexed_in_a_new_app(tmp_path, mode: str) -> None:
    write_app(
        tmp_path,
        """
        @app.route(route="Who", methods=["GET"])
        @protected
        def who(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
            return json_response({"id": identity.id})
        """,
    )
    app = app_of(tmp_path, mode)
    shared.clear_cache()
    response = Client(app).get("/api/who", headers=bearer())
    assert (response.status_code, response.get_json()) == (200, {"id": "v2-user"})


def test_two_function_apps_in_one_script_are_refused(tmp_path) -> None:
    write_app(tmp_path, "other = func.FunctionApp()\n")
    with pytest.raises(FunctionAppError, match="more than one top-level function app"):
        app_of(tmp_path, "direct")


def test_python_m_devserver_root_examples_v2_serves_it() -> None:
    with devserver("--root", str(V2_ROOT)) as running:
        out = running.stdout_path.read_text()
        how = (
            "through Microsoft's worker library (azure-functions-runtime)"
            if WORKER
            else "by calling the functions the app's get_functions() indexed directly"
        )
        assert how in out
        assert f"hello: [GET] {running.api}/api/Hello" in out
        assert f"ValidateToken: [GET,POST] {running.api}/api/ValidateToken" in out
        token = running.mint()
        hello = requests.get(f"{running.api}/api/Hello", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert hello.status_code == 200
        assert set(hello.json()) == {"hello"}
        products = requests.get(f"{running.api}/api/ProtectedApi", headers={"accessToken": token}, timeout=5)
        assert products.status_code == 200
        assert products.json()["products"]
