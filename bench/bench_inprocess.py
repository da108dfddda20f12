"""In-process cost of one request, measured by pytest-benchmark (run by `python -m bench`, not by `make test`).

The floor is the cheapest full request through the same function: a `401 missing_token`.
"""

import json
import os
from collections.abc import Iterator

import pytest
import requests_mock
from pytest_benchmark.fixture import BenchmarkFixture

import ProtectedApi
import shared
import ValidateToken
from tests.helpers import identity_payload, make_jwt, request

MOCK_URL = "https://kaizala.bench/v1/users/me"


@pytest.fixture(scope="module", autouse=True)
def settings() -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(
        AUTH_PROVIDERS="kaizala",
        KAIZALA_IDENTITY_URL=MOCK_URL,
        KAIZALA_ALLOWED_ACTION_PACKAGE_IDS="com.contoso.productpicker",
        TOKEN_CACHE_SECONDS="300",
    )
    shared.clear_cache()
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def token() -> str:
    token = make_jwt()
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload())
        assert ValidateToken.main(request(token=token)).status_code == 200  # now cached
    return token


def test_floor_missing_token(benchmark: BenchmarkFixture) -> None:
    anonymous = request()
    response = benchmark(ValidateToken.main, anonymous)
    assert response.status_code == 401


def test_validate_token_cached(benchmark: BenchmarkFixture, token: str) -> None:
    req = request(token=token)
    response = benchmark(ValidateToken.main, req)
    assert response.status_code == 200
    assert json.loads(response.get_body())["id"] == "user-1"


def test_protected_api_cached(benchmark: BenchmarkFixture, token: str) -> None:
    req = request(function="ProtectedApi", token=token, params={"category": "coffee", "limit": "10"})
    response = benchmark(ProtectedApi.main, req)
    assert response.status_code == 200
