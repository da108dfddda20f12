"""GET /api/ProtectedApi: the product list for a card's dropdown (the body is shared with the v2 blueprint)."""

from shared.functions import CACHE_HEADERS
from shared.functions import protected_api as main

__all__ = ["CACHE_HEADERS", "main"]
