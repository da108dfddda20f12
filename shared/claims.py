"""What a JWT says about itself, read without verifying anything: the provider verifies. Used for a token's `exp`
(no cache entry outlives it) and to route a token to its provider."""

import base64
import binascii
import math
import time
from typing import Any

from . import messages as say
from .errors import InvalidToken
from .http import untrusted_json

CLOCK_SKEW_SECONDS = 60


def unverified_payload(token: str) -> dict[str, Any] | None:
    """A JWT's payload, read without verifying anything. None for a token that is not JWT-shaped (an opaque one);
    InvalidToken for a JWT-shaped token whose payload is not a readable JSON object."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = untrusted_json.parse(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):  # not base64url, or untrusted_json.NotJson
        raise InvalidToken(say.JWT_PAYLOAD_NOT_JSON) from None
    if not isinstance(payload, dict):
        raise InvalidToken(say.JWT_PAYLOAD_NOT_OBJECT)
    return payload


def expiry(token: str, renew: str, now: float | None = None) -> float | None:
    """The `exp` of a JWT (unix seconds), read without verifying: the provider verifies it. None for an opaque
    token.

    A JWT-shaped token whose payload cannot be read, or whose `exp` is not a number, is refused here; one whose
    `exp` has passed (beyond the allowed clock skew) too.
    """
    payload = unverified_payload(token)
    if payload is None:
        return None
    exp = payload.get("exp")
    if exp is None:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise InvalidToken(say.EXPIRY_NOT_A_NUMBER)
    try:
        exp = float(exp)
    except OverflowError:  # an integer beyond any float: no real token expires after the end of time
        exp = math.inf
    if not math.isfinite(exp):
        raise InvalidToken(say.EXPIRY_NOT_USABLE)
    current = time.time() if now is None else now
    if exp + CLOCK_SKEW_SECONDS < current:
        raise InvalidToken(say.expired(renew))
    return exp
