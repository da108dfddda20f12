"""The product catalog behind ProtectedApi: loading, query parameters, and the rendered JSON with its ETag."""

import functools
import hashlib
import json
import math
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidRequest
from .settings import SettingsError

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_TEXT_PARAM = 100
QUERY_PARAMS = ("q", "category", "limit")


@dataclass(frozen=True, slots=True)
class ProductQuery:
    q: str | None = None
    category: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "ProductQuery":
        unknown = sorted(name for name in params if name not in QUERY_PARAMS)
        if unknown:
            raise InvalidRequest(f"Unknown query parameter {unknown[0]!r}; use q, category and limit.")
        category = _text_param(params, "category")
        if category is not None and "," in category:
            # A repeated parameter reaches the function as one value joined with "," (the Functions host does it).
            raise InvalidRequest("Query parameter 'category' takes one category; send it once, without commas.")
        return cls(
            q=_text_param(params, "q"),
            category=category,
            limit=_limit_param(params.get("limit")),
        )


@dataclass(frozen=True, slots=True)
class Listing:
    body: bytes
    etag: str


@dataclass(frozen=True, eq=False, slots=True)
class Catalog:
    products: tuple[dict[str, Any], ...]  # sorted by name

    def listing(self, query: ProductQuery) -> Listing:
        return _render(self, query)


def load_catalog(path: Path) -> Catalog:
    """The catalog in `path`, re-read only when the file changes. Raises SettingsError naming PRODUCTS_FILE."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise SettingsError("PRODUCTS_FILE", f"cannot read {path}: {exc.strerror}") from None
    return _load(path, stat.st_mtime_ns, stat.st_size)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires (RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    candidates = (candidate.strip() for candidate in if_none_match.split(","))
    return any(candidate == "*" or candidate.removeprefix("W/") == wanted for candidate in candidates)


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(path: Path, _mtime_ns: int, _size: int) -> Catalog:
    with _load_lock:
        try:
            raw = json.loads(path.read_bytes())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise SettingsError("PRODUCTS_FILE", f"{path} is not readable JSON ({type(exc).__name__})") from None
    items = raw.get("products") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise SettingsError("PRODUCTS_FILE", f'{path} must hold a JSON list of products or {{"products": [...]}}')
    products = [_product(item, index, path) for index, item in enumerate(items)]
    ids = [product["id"] for product in products]
    if len(set(ids)) != len(ids):
        raise SettingsError("PRODUCTS_FILE", f"{path} has duplicate product ids")
    return Catalog(tuple(sorted(products, key=lambda p: (p["name"].casefold(), p["id"]))))


def _product(item: object, index: int, path: Path) -> dict[str, Any]:
    def bad(problem: str) -> SettingsError:
        return SettingsError("PRODUCTS_FILE", f"{path}: product #{index} {problem}")

    if not isinstance(item, dict):
        raise bad("is not an object")
    for name in ("id", "name", "category", "currency"):
        if not isinstance(item.get(name), str) or not item[name].strip():
            raise bad(f"needs a non-empty string {name!r}")
    price = item.get("price")
    if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) or price < 0:
        raise bad("needs a non-negative number 'price'")
    return {name: item[name] for name in ("id", "name", "category", "price", "currency")}


@functools.lru_cache(maxsize=512)
def _render(catalog: Catalog, query: ProductQuery) -> Listing:
    q = query.q.casefold() if query.q else None
    category = query.category.casefold() if query.category else None
    selected = [
        product
        for product in catalog.products
        if (q is None or q in product["name"].casefold())
        and (category is None or product["category"].casefold() == category)
    ][: query.limit]
    body = json.dumps({"products": selected, "count": len(selected)}, separators=(",", ":")).encode()
    return Listing(body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _text_param(params: Mapping[str, str], name: str) -> str | None:
    """None when absent (the Functions host drops a parameter with an empty value before the function sees it).

    The length limit counts the value as sent; surrounding spaces are then trimmed, and a value that is blank or
    holds control characters is refused rather than read as "any" (it would silently return everything).
    """
    value = params.get(name)
    if value is None:
        return None
    if len(value) > MAX_TEXT_PARAM:
        raise InvalidRequest(f"Query parameter {name!r} is longer than {MAX_TEXT_PARAM} characters.")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise InvalidRequest(f"Query parameter {name!r} contains control characters.")
    if not value.strip():
        raise InvalidRequest(f"Query parameter {name!r} is blank; leave it out to match every product.")
    return value.strip()


def _limit_param(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    value = raw.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(f"Query parameter 'limit' must be a whole number from 1 to {MAX_LIMIT}.")
    return int(value)
