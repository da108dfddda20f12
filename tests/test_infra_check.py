"""`make infra-check`: checkov over infra/, offline, from its own venv of pinned requirements, run by CI.

`make -n` prints what make would run without running it, so these never build a venv or reach a registry.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")


def dry_run(*args: str) -> str:
    if MAKE is None:
        pytest.skip("no make on this machine")
    command = [MAKE, "--no-print-directory", "-C", str(ROOT), "-n", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


def test_infra_check_builds_its_own_venv_from_the_pinned_requirements(tmp_path: Path) -> None:
    venv = tmp_path / "checkov-venv"
    plan = dry_run("infra-check", f"CHECKOV_VENV={venv}")
    assert f"-m venv --clear {venv}" in plan
    assert f"{venv}/bin/python -m pip install --quiet -r requirements-checkov.txt" in plan
    assert "requirements-dev.txt" not in plan, "checkov's dependencies stay out of the dev venv, and the reverse"


def test_infra_check_runs_checkov_over_infra_without_the_network(tmp_path: Path) -> None:
    venv = tmp_path / "checkov-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than requirements-checkov.txt: the venv is reused
    plan = dry_run("infra-check", f"CHECKOV_VENV={venv}")
    assert "pip install" not in plan
    assert f"{venv}/bin/checkov -d infra --framework bicep --compact --quiet --skip-download" in plan.splitlines()


def test_every_checkov_requirement_is_pinned() -> None:
    lines = [line for line in (ROOT / "requirements-checkov.txt").read_text().splitlines() if line.strip()]
    requirements = [line for line in lines if not line.startswith("#")]
    assert any(line.startswith("checkov==") for line in requirements)
    unpinned = [line for line in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", line)]
    assert not unpinned, f"pin these with ==: {unpinned}"


def test_ci_runs_the_infra_check() -> None:
    steps = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make infra-check" in steps
