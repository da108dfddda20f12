"""The Makefile as a newcomer drives it: which interpreter makes the venv, and the ports `make run` takes.

`make -n` prints what make would run without running it, so these never build a venv or reach a registry.
"""

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
if MAKE is None:  # `make test` itself needs make: only a bare `pytest` on a machine without it gets here
    pytest.skip("no make on this machine", allow_module_level=True)

THIS_PYTHON = f"{sys.executable} {platform.python_version()}"


def make(*args: str, dry_run: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(MAKE), "--no-print-directory", "-C", str(ROOT), *(["-n"] if dry_run else []), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)


def venv_with_stamp(tmp_path: Path, recorded: str | None) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    if recorded is not None:
        (venv / ".installed").write_text(recorded + "\n")  # newer than the requirements files
    return venv


def builds_venv(plan: str) -> bool:
    return " -m venv " in plan and "pip install" in plan


def test_a_venv_made_by_this_interpreter_is_reused(tmp_path: Path) -> None:
    venv = venv_with_stamp(tmp_path, THIS_PYTHON)
    plan = make("test", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert plan.returncode == 0, plan.stderr
    assert not builds_venv(plan.stdout), plan.stdout
    assert f"{venv}/bin/ruff check ." in plan.stdout
    assert f"{venv}/bin/python -m pytest" in plan.stdout


@pytest.mark.parametrize(
    "recorded",
    [
        "/usr/bin/python3.12 3.12.1",  # another interpreter
        f"{sys.executable} 3.11.0",  # the same path, upgraded in place
        "",  # a stamp from before the interpreter was recorded
    ],
)
def test_a_venv_made_by_another_interpreter_is_made_again(tmp_path: Path, recorded: str) -> None:
    venv = venv_with_stamp(tmp_path, recorded)
    plan = make("test", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert plan.returncode == 0, plan.stderr
    assert f"{sys.executable} -m venv --clear {venv}" in plan.stdout
    assert builds_venv(plan.stdout)
    assert THIS_PYTHON in plan.stdout  # recorded in the new stamp


def test_a_missing_venv_is_made(tmp_path: Path) -> None:
    plan = make("lint", f"PYTHON={sys.executable}", f"VENV={tmp_path / 'fresh'}")
    assert plan.returncode == 0, plan.stderr
    assert builds_venv(plan.stdout)


def test_a_python_that_does_not_run_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    result = make(f"{tmp_path / 'venv'}/.installed", f"PYTHON={missing}", f"VENV={tmp_path / 'venv'}", dry_run=False)
    assert result.returncode != 0
    assert f"PYTHON={missing} does not run" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_make_run_takes_the_ports(tmp_path: Path) -> None:
    venv = venv_with_stamp(tmp_path, THIS_PYTHON)
    plan = make("run", "PORT=8071", "KAIZALA_PORT=8072", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert plan.returncode == 0, plan.stderr
    assert f"{venv}/bin/python -m devserver --port 8071 --kaizala-port 8072" in plan.stdout.splitlines()
    default = make("run", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert f"{venv}/bin/python -m devserver" in default.stdout.splitlines()


def test_make_run_passes_args_through(tmp_path: Path) -> None:
    venv = venv_with_stamp(tmp_path, THIS_PYTHON)
    plan = make("run", "ARGS=--instances 3 --redis", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert plan.returncode == 0, plan.stderr
    assert f"{venv}/bin/python -m devserver --instances 3 --redis" in plan.stdout.splitlines()


def test_make_test_builds_the_docs_strictly_before_pytest(tmp_path: Path) -> None:
    venv = venv_with_stamp(tmp_path, THIS_PYTHON)
    plan = make("test", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    build = next(n for n, line in enumerate(lines) if f"{venv}/bin/mkdocs build --strict --site-dir build/site" in line)
    assert build < lines.index(f"{venv}/bin/python -m pytest")  # a broken link fails before the long run


def test_make_docs_serves_on_loopback_at_the_port_given(tmp_path: Path) -> None:
    venv = venv_with_stamp(tmp_path, THIS_PYTHON)
    default = make("docs", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert default.returncode == 0, default.stderr
    assert f"{venv}/bin/mkdocs serve --no-strict --dev-addr 127.0.0.1:8000" in default.stdout
    other = make("docs", "DOCS_PORT=8123", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert "--dev-addr 127.0.0.1:8123" in other.stdout
