"""`shared.blueprint` registers the v1 app's two functions, unchanged, for a v2 app: the same callables, bindings,
routes, methods and auth level as their function.json, and a signature the v2 worker's indexing accepts. The
example v2 app deploys with the v1 app's runtime requirements, host.json and settings."""

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import ProtectedApi
import ValidateToken
from shared.blueprint import blueprint

ROOT = Path(__file__).resolve().parent.parent
V2_ROOT = ROOT / "examples" / "v2"
V1_MAINS = {"ValidateToken": ValidateToken.main, "ProtectedApi": ProtectedApi.main}


def indexed() -> dict[str, Any]:
    """The blueprint's functions as a v2 app's indexing sees them (a new FunctionApp: each indexes once)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)  # the routes must not take the app's level
    app.register_functions(blueprint)
    return {function.get_function_name(): function for function in app.get_functions()}


def normalized(bindings: list[dict[str, Any]], default_route: str) -> list[dict[str, Any]]:
    """function.json's spelling and the decorators' (upper-case enums, the route always set) made comparable."""
    shaped = []
    for binding in bindings:
        one = {"type": binding["type"], "direction": binding["direction"].lower(), "name": binding["name"]}
        if binding["type"] == "httpTrigger":
            one["methods"] = sorted(method.upper() for method in binding["methods"])
            one["authLevel"] = binding["authLevel"].lower()
            one["route"] = binding.get("route") or default_route
        shaped.append(one)
    return sorted(shaped, key=lambda binding: binding["name"])


def test_the_blueprint_registers_exactly_the_two_functions() -> None:
    assert sorted(indexed()) == ["ProtectedApi", "ValidateToken"]


@pytest.mark.parametrize("name", sorted(V1_MAINS))
def test_each_function_has_its_function_json_bindings(name: str) -> None:
    v1 = json.loads((ROOT / name / "function.json").read_text())["bindings"]
    v2 = [json.loads(raw) for raw in indexed()[name].get_raw_bindings()]
    assert normalized(v2, name) == normalized(v1, name)
    assert normalized(v2, name)[1]["authLevel"] == "anonymous"


@pytest.mark.parametrize("name", sorted(V1_MAINS))
def test_each_function_is_the_v1_functions_main_itself(name: str) -> None:
    assert indexed()[name].get_user_function() is V1_MAINS[name]


@pytest.mark.parametrize("name", sorted(V1_MAINS))
def test_the_worker_sees_only_req_annotated_as_an_http_request(name: str) -> None:
    """What the v2 worker's indexing reads: `inspect.signature` (which follows `__wrapped__`) must find the trigger's
    parameter and `context` only (the worker passes func.Context by that name, without a binding), and
    `typing.get_type_hints` must resolve the request, context and response types."""
    user_function = indexed()[name].get_user_function()
    assert not hasattr(user_function, "__wrapped__")
    assert list(inspect.signature(user_function).parameters) == ["req", "context"]
    hints = typing.get_type_hints(user_function)
    assert hints["req"] is func.HttpRequest
    assert hints["context"] is func.Context
    assert hints["return"] is func.HttpResponse


def test_a_v1_app_never_imports_the_blueprint() -> None:
    code = "import sys, shared, ValidateToken, ProtectedApi; print('shared.blueprint' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_the_v2_example_deploys_the_v1_apps_runtime_requirements() -> None:
    assert requirement_lines(V2_ROOT / "requirements.txt") == requirement_lines(ROOT / "requirements.txt")


def test_the_v2_example_has_the_v1_apps_host_json_and_settings() -> None:
    for name in ("host.json", "local.settings.json.example"):
        assert json.loads((V2_ROOT / name).read_text()) == json.loads((ROOT / name).read_text()), name


def test_the_examples_are_not_deployed_with_the_v1_app() -> None:
    assert "examples" in (ROOT / ".funcignore").read_text().split()
    assert not (ROOT / "function_app.py").exists()  # it would make Azure's worker index the root as a v2 app
