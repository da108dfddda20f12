"""openapi.yaml is true of the running functions: schemathesis against `python -m devserver` on 127.0.0.1.

Each operation gets bounded, derandomized examples (the same requests every run), sent with a valid token, with
no token, and with a token for a card that is not allowed; every answer must be one the document describes:
status, content type, headers and body schema.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.devserver_process import DevServer, devserver
from tests.helpers import OTHER_CARD_ID

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 25


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with devserver("--no-access-log") as running:
        yield running


def test_the_document_is_openapi_3_1_and_names_every_error_code() -> None:
    document = yaml.safe_load(DOCUMENT.read_text())
    assert document["openapi"].startswith("3.1.")
    codes = set(document["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
    page = (ROOT / "docs" / "api.md").read_text()
    table = page.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    documented = {
        cell.strip("` ")
        for line in table.splitlines()
        if line.startswith("| 4") or line.startswith("| 5")
        for cell in [line.split("|")[2]]
    }
    assert codes == documented


@pytest.mark.slow
@pytest.mark.parametrize("caller", ["valid token", "no token", "disallowed card"])
def test_every_answer_is_described_by_the_document(server: DevServer, caller: str) -> None:
    token = {
        "valid token": server.mint(),
        "no token": None,
        "disallowed card": server.mint(actionPackageId=OTHER_CARD_ID),
    }
    headers = {"Authorization": f"Bearer {token[caller]}"} if token[caller] else {}
    assert server.api.startswith("http://127.0.0.1:")  # never anywhere else
    schema = schemathesis.openapi.from_path(str(DOCUMENT))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 3
    statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            response = case.call_and_validate(base_url=server.api, headers=headers, checks=CHECKS, timeout=10)
            statuses.add(response.status_code)

        conforms()
    expected = {"valid token": 200, "no token": 401, "disallowed card": 403}[caller]
    assert expected in statuses
