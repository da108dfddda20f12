"""Import names: this repository's `tests` and `shared` must be the ones imported, whatever the venv installs."""

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tests
from devserver import worker_host

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_APP_NAMES = {"shared", "ValidateToken", "ProtectedApi"}


def test_tests_is_this_repositorys_regular_package() -> None:
    assert tests.__file__ == str(ROOT / "tests" / "__init__.py")
    assert list(tests.__path__) == [str(ROOT / "tests")]


def test_a_regular_tests_package_later_on_sys_path_does_not_shadow_ours(tmp_path) -> None:
    """What a worker wheel with a regular top-level `tests` package (an __init__.py) would do to a namespace."""
    fake = tmp_path / "site" / "tests"
    (fake / "protos").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "protos" / "__init__.py").write_text("")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.append({str(tmp_path / "site")!r})
        import tests.helpers
        print(tests.__file__)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "tests" / "__init__.py")


def test_no_installed_distribution_provides_a_module_named_like_the_function_app() -> None:
    """The functions import `shared` by its plain name (the worker puts the app root on sys.path): a dependency
    installing a top-level `shared` (or a module named like a function folder) would be imported instead."""
    clashes = {
        name: providers
        for name, providers in importlib.metadata.packages_distributions().items()
        if name in FUNCTION_APP_NAMES
    }
    assert not clashes, f"installed distributions shadow the function app: {clashes}"


def test_shared_is_not_importable_without_the_app_root() -> None:
    """The same check from the import system itself: with the app root off sys.path, nothing is named `shared`."""
    code = "import importlib.util, sys; print([n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, *sorted(FUNCTION_APP_NAMES)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(not worker_host.available(), reason="the worker library runs on Python 3.13+ only")
def test_worker_protos_load_by_file_and_leave_tests_alone() -> None:
    protos = worker_host.load_protos()
    assert protos.__name__ == worker_host.PROTOS_MODULE
    assert protos.RpcHttp(method="GET").method == "GET"
    assert sys.modules["tests"] is tests
    assert "tests.protos" not in sys.modules
