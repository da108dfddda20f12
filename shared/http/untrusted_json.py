"""The one rule for JSON that anyone else wrote: a caller's body, a JWT payload, Kaizala's answer.

`json.loads` raises `RecursionError`, not `ValueError`, on deeply nested input (`[[[[...`), and an attacker
chooses the nesting. Every parse of untrusted JSON goes through `parse`, so every way such input can fail is one
exception the caller maps to its own documented error.
"""

import json
from typing import Any


class NotJson(ValueError):
    """The bytes are not JSON we will read: malformed, not UTF-8, or nested deeper than the parser allows."""


def parse(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NotJson() from None
