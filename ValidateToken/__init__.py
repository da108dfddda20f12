"""GET/POST /api/ValidateToken: who is calling, as Kaizala says (the body is shared with the v2 blueprint)."""

from shared.functions import validate_token as main

__all__ = ["main"]
