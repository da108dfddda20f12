"""docs/telemetry.md and shared/telemetry/names.py name the same metrics, attributes and values; the names module
imports nothing of OpenTelemetry."""

import subprocess
import sys
from pathlib import Path

from shared.telemetry import names

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "telemetry.md").read_text()
METRICS = [
    names.REQUESTS,
    names.UPSTREAM_DURATION,
    names.UPSTREAM_ACTIVE,
    names.SHED,
    names.FLEET_DURATION,
    names.FLEET_AVAILABLE,
    names.FLEET_STATE_CHANGES,
    names.SIGNING_KEY_FETCHES,
]


def test_every_metric_is_in_the_docs_table() -> None:
    table = [line for line in DOC.splitlines() if line.startswith("| `kaizala_auth.")]
    assert [line.split("`")[1] for line in table] == METRICS


def test_every_attribute_value_is_documented() -> None:
    words = (
        names.PROVIDERS
        | names.REQUEST_OUTCOMES
        | names.SOURCES
        | names.UPSTREAM_OUTCOMES
        | names.SHED_REASONS
        | names.FLEET_OUTCOMES
        | names.FLEET_STATES
    )
    missing = sorted(word for word in words if f"`{word}`" not in DOC)
    assert not missing, missing
    for key in (names.PROVIDER, names.OUTCOME, names.SOURCE, names.REASON, names.OPERATION, names.CAUSE, names.STATE):
        assert f"`{key}`" in DOC, key


def test_the_request_outcomes_are_the_error_codes() -> None:
    from shared import errors

    codes = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ApiError)}
    assert codes | {"ok"} == names.REQUEST_OUTCOMES


def test_the_span_names_are_documented() -> None:
    for span in (names.SPAN_KAIZALA, names.SPAN_ENTRA_KEYS, "redis <operation>"):
        assert f"`{span}`" in DOC, span


def test_importing_shared_telemetry_imports_no_opentelemetry() -> None:
    code = "import sys, shared.telemetry; print([m for m in sys.modules if m.startswith('opentelemetry')])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
