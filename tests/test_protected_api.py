"""ProtectedApi: authentication first, then filters, limits, sorting, ETag and caching headers."""

import json

import pytest
import requests_mock

import ProtectedApi
from tests.conftest import MOCK_URL
from tests.helpers import identity_payload, json_of, make_jwt, request


@pytest.fixture
def kaizala() -> requests_mock.Mocker:
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload())
        yield mocker


@pytest.fixture
def token() -> str:
    return make_jwt()


def get(token: str | None, params=None, headers=None):
    return ProtectedApi.main(request(function="ProtectedApi", token=token, params=params, headers=headers))


def test_anonymous_caller_gets_401_and_no_products(kaizala) -> None:
    response = get(None, params={"limit": "999"})  # bad params are not even looked at before authentication
    assert response.status_code == 401
    assert json_of(response)["error"] == "missing_token"


def test_bundled_catalog_sorted_by_name(kaizala, token) -> None:
    response = get(token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-cache"
    body = json_of(response)
    products = body["products"]
    assert body["count"] == len(products) >= 20
    assert len({p["category"] for p in products}) >= 3
    assert [p["name"].casefold() for p in products] == sorted(p["name"].casefold() for p in products)
    for product in products:
        assert set(product) == {"id", "name", "category", "price", "currency"}
        assert isinstance(product["price"], int | float)


def test_query_is_a_case_insensitive_name_substring(kaizala, token) -> None:
    products = json_of(get(token, {"q": "MILK"}))["products"]
    assert products
    assert all("milk" in p["name"].lower() for p in products)


def test_category_is_case_insensitive_exact(kaizala, token) -> None:
    products = json_of(get(token, {"category": "tea"}))["products"]
    assert {p["category"] for p in products} == {"Tea"}
    assert json_of(get(token, {"category": "te"}))["products"] == []


def test_limit(kaizala, token) -> None:
    assert json_of(get(token, {"limit": "3"}))["count"] == 3
    assert json_of(get(token, {"limit": "100"}))["count"] == len(json_of(get(token))["products"])


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"limit": "1" * 5000},
        {"sort": "price"},
        {"q": "x" * 101},
        {"q": " " * 101},  # the length counts the value as sent, before trimming
        {"q": "   "},  # blank: would match everything
        {"category": " "},
        {"q": "tea\x00"},  # control characters
        {"category": "\t\n"},
        {"category": "tea,coffee"},  # how ?category=tea&category=coffee reaches the function
        {"limit": "10,20"},  # a repeated limit
        {"Category": "tea"},  # names are case-sensitive
    ],
)
def test_malformed_query_is_400(kaizala, token, params) -> None:
    response = get(token, params)
    assert response.status_code == 400
    assert json_of(response)["error"] == "invalid_request"


def test_text_values_are_trimmed_and_commas_in_q_are_literal(kaizala, token) -> None:
    assert json_of(get(token, {"category": "  tea "})) == json_of(get(token, {"category": "tea"}))
    assert json_of(get(token, {"q": "tea,"}))["products"] == []


def test_empty_values_never_reach_the_function(kaizala, token) -> None:
    """`?category=` arrives as no parameter at all (the Functions host drops empty values): the whole catalog."""
    from devserver.conversion import join_query

    assert join_query([("category", ""), ("q", "")]) == {}
    assert join_query([("category", "tea"), ("category", "coffee")]) == {"category": "tea,coffee"}
    assert join_query([("category", ""), ("Category", "tea")]) == {"category": "tea"}  # empty values skipped
    assert json_of(get(token, join_query([("category", "")]))) == json_of(get(token))


def test_etag_and_if_none_match(kaizala, token) -> None:
    first = get(token, {"category": "Coffee"})
    etag = first.headers["ETag"]
    assert etag.startswith('"')
    again = get(token, {"category": "Coffee"}, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_body() == b""
    assert again.headers["ETag"] == etag
    assert get(token, {"category": "Coffee"}, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert get(token, {"category": "Tea"}, headers={"If-None-Match": etag}).status_code == 200


def test_if_none_match_does_not_bypass_authentication(kaizala, token) -> None:
    etag = get(token).headers["ETag"]
    assert ProtectedApi.main(request(function="ProtectedApi", headers={"If-None-Match": etag})).status_code == 401


def test_products_file_replaces_the_catalog(kaizala, token, monkeypatch, tmp_path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            [
                {"id": "b", "name": "Bolt", "category": "Parts", "price": 1, "currency": "EUR"},
                {"id": "a", "name": "anchor", "category": "Parts", "price": 2.5, "currency": "EUR"},
            ]
        )
    )
    monkeypatch.setenv("PRODUCTS_FILE", str(path))
    body = json_of(get(token))
    assert [p["id"] for p in body["products"]] == ["a", "b"]
    path.write_text(
        json.dumps({"products": [{"id": "c", "name": "Cog", "category": "Parts", "price": 3, "currency": "EUR"}]})
    )
    assert [p["id"] for p in json_of(get(token))["products"]] == ["c"]  # a changed file is picked up


def test_forbidden_card_gets_no_products(kaizala, token) -> None:
    kaizala.get(MOCK_URL, json=identity_payload(card="com.other"))
    response = get(token)
    assert response.status_code == 403
    assert b"products" not in response.get_body()
