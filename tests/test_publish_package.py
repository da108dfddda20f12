"""What `func azure functionapp publish --build remote` ships from a developer's working tree, computed the way
Core Tools computes it (tests/core_tools_package.py, a port of its source), and that the shipped folder, with
`requirements.txt` installed as the remote build installs it, runs both functions with nothing else on its path."""

import compileall
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devserver.kaizala import KaizalaStandIn
from devserver.wsgi import serve
from tests.core_tools_package import GitIgnoreParser, remote_build_package
from tests.helpers import CARD_ID, secret

ROOT = Path(__file__).resolve().parent.parent
# The app: what Azure needs to run it. Everything else in the repository is for developing it.
SHIPPED_ROOTS = {"host.json", "requirements.txt", "ValidateToken", "ProtectedApi", "shared"}
SITE_PACKAGES = ".python_packages/lib/site-packages"  # where the remote build installs requirements.txt
# A package someone adds to shared/ later: it ships like the rest, its compiled files do not.
NEW_SUBPACKAGE = "shared/subpackage_added_later"


# --- the port reads .funcignore as Core Tools does -----------------------------------------------------------------

# Core Tools' own test of its parser (test/Cli/Func.UnitTests/ParserTests/GitIgnoreParserTests.cs, lines 29-149).
UPSTREAM_FUNCIGNORE = """# This is a comment in a .gitignore file!
node_modules
*.log

# Ignore this nonexistent file
nonexistent

# Do not ignore this file
!/nonexistent/foo

# Ignore some files

/baz

foo/*.wat

/test1

test2

# Ignore some deep sub folders
othernonexistent/**/what

# Unignore some other sub folders
!/othernonexistent/**/what/foo


*.swp
"""


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("test/index.js", True),
        ("wat/test/index.js", True),
        ("/othernonexistent/blah/adsasd/whatads", True),
        ("/othernonexistent/blah/adsasd/what/foo", True),
        ("test2", False),
        ("test1File.wat", True),
        ("test.swp", False),
        ("node_modules/what.js", False),
        ("foo/bar.wat", False),
        ("othernonexistent/blah/what", False),
        ("nonexistent", False),
        ("nonexistent/bar", False),
        ("test1", False),
        ("nonexistent/foo", True),
        ("nonexistent/foo/wat", True),
    ],
)
def test_the_port_accepts_and_denies_what_core_tools_own_tests_expect(name: str, accepted: bool) -> None:
    parser = GitIgnoreParser(UPSTREAM_FUNCIGNORE)
    assert parser.accepts(name) is accepted
    assert parser.denies(name) is not accepted


def test_a_funcignore_rule_is_anchored_at_the_root() -> None:
    # Why .funcignore spells "**/" rules out: without them a compiled file in a package ships.
    parser = GitIgnoreParser("__pycache__\n*.pyc\n")
    assert parser.denies("__pycache__/x.cpython-311.pyc")
    assert parser.accepts("shared/__pycache__/auth.cpython-311.pyc")
    assert parser.accepts("shared/auth.pyc")
    both = GitIgnoreParser("__pycache__\n**/__pycache__\n")
    assert both.denies("shared/__pycache__/auth.cpython-311.pyc")
    assert both.denies("shared/a/b/__pycache__/c.pyc")
    # A rule covers every name it starts, up to a word boundary.
    assert GitIgnoreParser(".venv\n").denies(".venv-3.13/bin/python")
    assert GitIgnoreParser("build\n").accepts("builder.py")


# --- what ships from a dirty working tree ---------------------------------------------------------------------------


def working_tree_files() -> list[str]:
    """The working tree as a fresh clone would have it: tracked files, and new ones git does not ignore."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is needed to list the working tree's files")
    listed = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


def write(path: Path, content: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def make_dirty(app: Path) -> None:
    """What a developer's checkout holds besides the sources after `make test`, `make run` and `make package`."""
    compileall.compile_dir(str(app), quiet=1)  # a __pycache__ in every package
    write(app / "shared" / "legacy.pyc", "compiled beside its source")
    write(app / "__pycache__" / "conftest.cpython-311.pyc")
    for venv in (".venv", ".venv-3.13"):
        write(app / venv / "pyvenv.cfg", "home = /usr/bin\n")
        write(app / venv / "lib" / "python3.11" / "site-packages" / "requests" / "__init__.py")
        write(app / venv / ".installed", "/usr/bin/python3 3.11.7\n")
    write(app / "teams" / "node_modules" / "@microsoft" / "teams-js" / "package.json", "{}")
    write(app / "build" / "productpicker.zip")
    write(app / "build" / "tab" / "index.html")
    write(app / "build" / "site" / "index.html")  # make test builds the documentation site there
    write(app / "card.zip")
    for cache in (".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".benchmarks"):
        write(app / cache / "README.md")
    write(app / "local.settings.json", '{"Values": {"KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "*"}}')
    write(app / "shared" / "local.settings.json", "{}")
    write(app / ".vscode" / "settings.json", "{}")
    write(app / ".git", "gitdir: /home/dev/kaizala-auth/.git/worktrees/wt\n")  # a worktree's .git is a file
    write(app / SITE_PACKAGES / "left_from_a_local_build.py")


@pytest.fixture(scope="module")
def dirty_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A copy of the working tree made dirty, and the names of its clean files (sources a clone would have)."""
    app = tmp_path_factory.mktemp("checkout") / "app"
    clean = set(working_tree_files())
    for name in clean:
        write(app / name)
        shutil.copyfile(ROOT / name, app / name)
    for name in (f"{NEW_SUBPACKAGE}/__init__.py", f"{NEW_SUBPACKAGE}/inner/__init__.py"):
        write(app / name, '"""A package added to shared/ later."""\n')
        clean.add(name)
    make_dirty(app)
    return app, clean


def shipped_rules_broken(name: str) -> list[str]:
    parts = name.split("/")
    broken = []
    if parts[0] not in SHIPPED_ROOTS:
        broken.append("outside the app")
    if "__pycache__" in parts or name.endswith((".pyc", ".pyo")):
        broken.append("compiled")
    if parts[-1].lower() in ("local.settings.json", ".funcignore", ".gitignore"):
        broken.append("local or tooling file")
    return broken


def test_only_the_app_ships_from_a_dirty_working_tree(dirty_tree: tuple[Path, set[str]]) -> None:
    app, clean = dirty_tree
    shipped = remote_build_package(app)
    broken = {name: why for name in sorted(shipped) if (why := shipped_rules_broken(name))}
    assert not broken, f"these would be deployed: {broken}"
    # Every source of the app ships: nothing under host.json, requirements.txt, the functions or shared/ is lost.
    assert shipped == {name for name in clean if name.split("/", 1)[0] in SHIPPED_ROOTS}
    assert {
        "host.json",
        "requirements.txt",
        "ValidateToken/__init__.py",
        "ValidateToken/function.json",
        "ProtectedApi/__init__.py",
        "ProtectedApi/function.json",
        "shared/__init__.py",
        "shared/products.json",
        f"{NEW_SUBPACKAGE}/__init__.py",
        f"{NEW_SUBPACKAGE}/inner/__init__.py",
    } <= shipped
    # The dirt was there to be left out, and the port walked it.
    assert (app / "shared" / "__pycache__").is_dir()
    assert (app / NEW_SUBPACKAGE / "inner" / "__pycache__").is_dir()
    for name in (".git", "local.settings.json", "card.zip", "requirements-dev.txt", "README.md", "mkdocs.yml"):
        assert name not in shipped
        assert (app / name).is_file()


# --- the shipped folder runs on its own -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wwwroot(dirty_tree: tuple[Path, set[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped files alone in a fresh folder, with requirements.txt installed from PyPI as the remote build
    installs it (pip install --target .python_packages/lib/site-packages); once per run."""
    app, _ = dirty_tree
    root = tmp_path_factory.mktemp("wwwroot")
    for name in remote_build_package(app):
        write(root / name)
        shutil.copyfile(app / name, root / name)
    started = time.monotonic()
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"),
            *("--target", str(root / SITE_PACKAGES), "-r", str(root / "requirements.txt")),
        ],
        check=True,
        timeout=300,
    )
    print(f"requirements.txt installed in {time.monotonic() - started:.1f} s")  # shown with pytest -s
    return root


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    """The Kaizala stand-in on a free loopback port; its base URL."""
    server = serve(KaizalaStandIn(), "127.0.0.1", 0, access_log=False)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()


# Run as `python -I -S -c CHILD <wwwroot>`: -I ignores PYTHON* variables, the user's site-packages and the current
# folder; -S skips site-packages altogether, so sys.path starts as the standard library alone. Then the package's
# folder and its .python_packages are added, and each function is imported as the Python worker imports a v1
# function (azure_functions_worker/loader.py: `__app__.<Folder>` from an `__app__` namespace package over the app's
# folder, with .python_packages/lib/site-packages on sys.path).
CHILD = """
import importlib, importlib.machinery, importlib.util, json, sys
root = sys.argv[1]
stdlib = list(sys.path)
sys.path[:0] = [root + "/.python_packages/lib/site-packages", root]
spec = importlib.machinery.ModuleSpec("__app__", None)
spec.submodule_search_locations = [root]
sys.modules["__app__"] = importlib.util.module_from_spec(spec)
import azure.functions as func
token = sys.stdin.read().strip()
results = {}
for name in ("ValidateToken", "ProtectedApi"):
    main = importlib.import_module("__app__." + name).main
    for caller, headers in (("anonymous", {}), ("token", {"Authorization": "Bearer " + token})):
        req = func.HttpRequest("GET", "http://localhost/api/" + name, headers=headers, params={}, body=b"")
        response = main(req)
        results[name + " " + caller] = {"status": response.status_code, "body": json.loads(response.get_body())}
files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
print(json.dumps({"stdlib": stdlib, "path": sys.path, "files": files, "results": results}))
"""


@pytest.mark.slow
def test_the_shipped_folder_runs_both_functions_with_only_its_own_packages(wwwroot: Path, stand_in: str) -> None:
    minted = requests.post(f"{stand_in}/v1/dev/tokens", json={}, timeout=5)
    assert minted.status_code == 201, minted.text
    token = secret(minted.json()["token"])
    env = {
        "AUTH_PROVIDERS": "kaizala",
        "KAIZALA_IDENTITY_URL": f"{stand_in}/v1/users/me",
        "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": CARD_ID,
    }
    child = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, str(wwwroot)],
        input=token,
        env=env,
        cwd=wwwroot,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert token not in child.stdout + child.stderr
    report = json.loads(child.stdout)

    # Only the standard library, the package's folder and its .python_packages were on the path ...
    site = str(wwwroot / SITE_PACKAGES)
    assert report["path"] == [site, str(wwwroot), *report["stdlib"]]
    assert not [entry for entry in report["stdlib"] if "-packages" in entry]
    # ... and every module the functions used came from one of them: the app's own code and libraries from the
    # package, none from this machine's virtualenv.
    outside = [
        f
        for f in report["files"]
        if not f.startswith(str(wwwroot)) and (not f.startswith(tuple(report["stdlib"])) or "-packages/" in f)
    ]
    assert not outside, outside
    for library in ("azure/functions/", "requests/", "cachetools/", "shared/"):
        assert any(f.startswith((f"{site}/{library}", f"{wwwroot}/{library}")) for f in report["files"]), library

    results = report["results"]
    for name in ("ValidateToken", "ProtectedApi"):
        assert results[f"{name} anonymous"]["status"] == 401
        assert results[f"{name} anonymous"]["body"]["error"] == "missing_token"
        assert results[f"{name} token"]["status"] == 200, results[f"{name} token"]
    assert results["ValidateToken token"]["body"]["actionPackageId"] == CARD_ID
    assert results["ProtectedApi token"]["body"]["count"] == len(results["ProtectedApi token"]["body"]["products"])
    assert results["ProtectedApi token"]["body"]["count"] > 0
