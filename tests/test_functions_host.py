"""The local Functions host in-process: discovery, route templates, routePrefix, validation, request mapping."""

import http.client
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from werkzeug.test import Client

from devserver import worker_host
from devserver.functions_host import FunctionAppError, load_app

WORKER = worker_host.available()  # Python 3.13+: load_app runs functions through Microsoft's worker library

ECHO = textwrap.dedent(
    """
    import json
    import azure.functions as func

    def main(request: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({
            "method": request.method,
            "params": dict(request.params),
            "route": dict(request.route_params),
            "body": request.get_body().decode(),
            "header": request.headers.get("x-test"),
        }), mimetype="application/json")
    """
)


_opened = []


def app_of(root: Path, *args, **kwargs):
    """load_app, closed after the test (on 3.13 each app holds a worker library thread pool)."""
    app = load_app(root, *args, **kwargs)
    _opened.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_apps():
    yield
    while _opened:
        _opened.pop().close()


def make_app(root: Path, functions: dict[str, dict], host: dict | None = None, code: str = ECHO) -> dict[str, str]:
    """Function folders with unique names (modules are imported for real); returns name -> folder name."""
    (root / "host.json").write_text(json.dumps(host or {"version": "2.0"}))
    names = {}
    for name, trigger in functions.items():
        folder = f"{name}_{uuid.uuid4().hex[:8]}"
        names[name] = folder
        (root / folder).mkdir()
        (root / folder / "__init__.py").write_text(code)
        bindings = [
            {"type": "httpTrigger", "direction": "in", "name": "request", "authLevel": "anonymous", **trigger},
            {"type": "http", "direction": "out", "name": "$return"},
        ]
        (root / folder / "function.json").write_text(json.dumps({"scriptFile": "__init__.py", "bindings": bindings}))
    return names


def test_default_route_is_the_folder_name_under_api(tmp_path) -> None:
    names = make_app(tmp_path, {"Echo": {"methods": ["get", "post"]}})
    client = Client(app_of(tmp_path))
    response = client.post(f"/api/{names['Echo']}?a=1", data=b"hello", headers={"X-Test": "yes"})
    assert response.status_code == 200
    assert response.json == {"method": "POST", "params": {"a": "1"}, "route": {}, "body": "hello", "header": "yes"}
    assert response.headers["Content-Type"] == "application/json"  # as the worker sends it: no charset


def test_route_templates_and_route_prefix(tmp_path) -> None:
    make_app(
        tmp_path,
        {"Item": {"route": "items/{id:int}/{name?}", "methods": ["get"]}, "Files": {"route": "files/{*path}"}},
        host={"version": "2.0", "extensions": {"http": {"routePrefix": "v2"}}},
    )
    client = Client(app_of(tmp_path))
    assert client.get("/v2/items/42/bolt").json["route"] == {"id": "42", "name": "bolt"}
    assert client.get("/v2/items/42").json["route"] == {"id": "42"}
    assert client.get("/v2/items/abc").status_code == 404
    assert client.get("/v2/files/a/b/c.txt").json["route"] == {"path": "a/b/c.txt"}
    assert client.delete("/v2/files/x").status_code == 200  # no methods listed: every method
    assert client.get("/api/items/42").status_code == 404


def test_empty_route_prefix(tmp_path) -> None:
    names = make_app(tmp_path, {"Echo": {}}, host={"version": "2.0", "extensions": {"http": {"routePrefix": ""}}})
    assert Client(app_of(tmp_path)).get(f"/{names['Echo']}").status_code == 200


def test_method_not_allowed(tmp_path) -> None:
    names = make_app(tmp_path, {"Echo": {"methods": ["get"]}})
    response = Client(app_of(tmp_path)).put(f"/api/{names['Echo']}")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"


def test_exception_in_a_function_is_a_json_500(tmp_path) -> None:
    names = make_app(tmp_path, {"Boom": {}}, code="def main(request):\n    raise RuntimeError('boom')\n")
    response = Client(app_of(tmp_path)).get(f"/api/{names['Boom']}")
    assert response.status_code == 500
    assert response.json["error"] == "internal_error"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("{nope", "not valid JSON"),
        (json.dumps({"bindings": []}), "httpTrigger"),
        (json.dumps({"bindings": [{"type": "httpTrigger", "name": "req"}]}), "'$return'"),
        (
            json.dumps(
                {
                    "scriptFile": "missing.py",
                    "bindings": [
                        {"type": "httpTrigger", "name": "req"},
                        {"type": "http", "direction": "out", "name": "$return"},
                    ],
                }
            ),
            "scriptFile 'missing.py' does not exist",
        ),
        (
            json.dumps(
                {
                    "entryPoint": "run",
                    "bindings": [
                        {"type": "httpTrigger", "name": "req"},
                        {"type": "http", "direction": "out", "name": "$return"},
                    ],
                }
            ),
            "function %s() is not present" if WORKER else "entry point 'run'",
        ),
        (
            json.dumps(
                {
                    "bindings": [
                        {"type": "httpTrigger", "name": "other"},
                        {"type": "http", "direction": "out", "name": "$return"},
                    ]
                }
            ),
            "declared in Python but not in function.json: {'req'}" if WORKER else "no parameter 'other'",
        ),
    ],
)
def test_invalid_function_json_names_the_file_and_problem(tmp_path, config: str, problem: str) -> None:
    folder = tmp_path / f"Bad_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "__init__.py").write_text("def main(req):\n    return None\n")
    (folder / "function.json").write_text(config)
    with pytest.raises(FunctionAppError) as failure:
        app_of(tmp_path)
    assert f"{folder.name}/function.json" in str(failure.value) or folder.name in str(failure.value)
    assert problem in str(failure.value)


def test_the_real_app_has_both_functions() -> None:
    app = app_of(Path(__file__).resolve().parent.parent)
    routes = {function.name: (function.route, function.methods) for function in app.functions}
    assert routes == {
        "ProtectedApi": ("api/ProtectedApi", ("GET",)),
        "ValidateToken": ("api/ValidateToken", ("GET", "POST")),
    }


ECHO_ALL = textwrap.dedent(
    """
    import json
    import azure.functions as func

    def main(request: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({
            "url": request.url,
            "params": dict(request.params),
            "headers": dict(request.headers),
            "body": request.get_body().decode(),
        }), mimetype="application/json")
    """
)


def test_request_conversion_as_the_functions_host_does_it(tmp_path) -> None:
    """Repeated query keys joined with "," (case-insensitively, first spelling kept), empty values dropped, the
    URL with its query string, header names lower-cased, and no body when none was sent."""
    names = make_app(tmp_path, {"Echo": {}}, code=ECHO_ALL)
    client = Client(app_of(tmp_path))
    query = "a=1&A=2&token=&b=&c=x%20y&d=&d=4&flag"
    answer = client.get(f"/api/{names['Echo']}?{query}", headers={"X-Test": "yes"}).json
    assert answer["params"] == {"a": "1,2", "c": "x y", "d": "4"}
    assert answer["url"].endswith(f"/api/{names['Echo']}?{query}")
    assert answer["headers"]["x-test"] == "yes"
    assert "X-Test" not in answer["headers"]
    assert answer["body"] == ""


def test_routes_match_case_insensitively(tmp_path) -> None:
    names = make_app(tmp_path, {"Echo": {"route": "Items/{id}", "methods": ["get"]}}, code=ECHO)
    del names
    client = Client(app_of(tmp_path))
    assert client.get("/API/items/AbC").json["route"] == {"id": "AbC"}  # parameters keep their case
    assert client.get("/api/ITEMS/7").status_code == 200
    assert client.get("/api/itemz/7").status_code == 404


def test_repeated_headers_over_the_wire_are_joined_with_a_comma(tmp_path) -> None:
    """ASP.NET's StringValues.ToString(): non-empty values joined with "," (no space)."""
    from tests.devserver_process import devserver

    names = make_app(tmp_path, {"Echo": {}}, code=ECHO_ALL)
    with devserver("--root", str(tmp_path)) as server:
        host, port = server.api.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.putrequest("GET", f"/api/{names['Echo']}")
        connection.putheader("X-Repeated", "one")
        connection.putheader("X-Repeated", "")
        connection.putheader("X-Repeated", "two")
        connection.endheaders()
        answer = json.loads(connection.getresponse().read())
        connection.close()
    assert answer["headers"]["x-repeated"] == "one,two"
