"""Kaizala: asks `GET users/me` who a card's token belongs to, within one deadline, through the hardened upstream
client (`shared.upstream`). Every upstream outcome maps to exactly one typed error."""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .. import messages as say
from .. import request_token, telemetry
from ..errors import IdentityBadResponse, IdentityUnavailable, InvalidToken, KaizalaThrottled
from ..http import untrusted_json
from ..identity import KAIZALA, Identity, Provider
from .base import IdentityProvider

if TYPE_CHECKING:  # requests loads on the first call to Kaizala, not when the functions load
    import requests

    from ..http.upstream import Answer

log = logging.getLogger("kaizala_auth")

MAX_RETRY_AFTER_SECONDS = 300
REJECTED_STATUSES = frozenset({400, 401, 403})
IDENTITY_FIELDS = ("id", "name", "phoneNumber", "pictureUrl", "actionPackageId")
SERVICE = say.KAIZALA_SERVICE
RENEW = say.KAIZALA_RENEW


class KaizalaClient:
    def __init__(self, session: "requests.Session | None" = None) -> None:
        from ..http.upstream import Upstream  # noqa: PLC0415 - see TYPE_CHECKING above

        self.upstream = Upstream(SERVICE, "kaizala", session)

    def fetch_identity(self, token: str, url: str, deadline: float) -> Identity:
        """Who `token` belongs to, or a typed error; gives up at `deadline` (a `time.monotonic()` value): at
        that moment any read still in progress is cut off."""
        with telemetry.upstream_call(KAIZALA, telemetry.names.SPAN_KAIZALA) as call:
            answer = self.upstream.get(url, {"accessToken": token, "Accept": "application/json"}, deadline)
            call.status(answer.status)
            return _identity_from(answer)


class Kaizala(IdentityProvider):
    """A Kaizala card's Integration Service token, checked with Kaizala's users/me at `url`."""

    name: ClassVar[Provider] = KAIZALA
    service: ClassVar[str] = SERVICE
    renew: ClassVar[str] = RENEW
    max_token_length: ClassVar[int] = request_token.MAX_TOKEN_LENGTH

    def __init__(self, url: str, client: Callable[[], KaizalaClient]) -> None:
        self.url = url
        self.client = client  # made on the first call

    def claim(self, token: str) -> bool:
        request_token.check_shape(token, self.max_token_length)  # only Entra's tokens may be longer
        return True

    def verify(self, token: str, deadline: float) -> Identity:
        return self.client().fetch_identity(token, self.url, deadline)


def _identity_from(answer: "Answer") -> Identity:
    status, body = answer.status, answer.body
    if status in REJECTED_STATUSES:
        raise InvalidToken(say.KAIZALA_REJECTED)
    if status == 429:
        raise KaizalaThrottled(retry_after=_retry_after(answer.headers.get("Retry-After")))
    if status >= 500:
        raise IdentityUnavailable(retry_after=_retry_after(answer.headers.get("Retry-After")))
    if status != 200:
        log.warning("kaizala answered unexpected status %d", status)
        raise IdentityBadResponse()
    if body is None:
        raise IdentityBadResponse()
    payload = _json_object(body)
    user_id = payload.get("id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise IdentityBadResponse()
    if not all(_encodable(payload.get(name)) for name in IDENTITY_FIELDS):
        raise IdentityBadResponse()  # a lone surrogate ("\ud800") is valid JSON but no text anyone can store
    return Identity(
        id=user_id,
        name=_text(payload.get("name")),
        phone_number=_text(payload.get("phoneNumber")),
        picture_url=_text(payload.get("pictureUrl")),
        action_package_id=_text(payload.get("actionPackageId")),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = untrusted_json.parse(body)
    except untrusted_json.NotJson:
        raise IdentityBadResponse() from None
    if not isinstance(payload, dict):
        raise IdentityBadResponse()
    return payload


def _encodable(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _retry_after(raw: str | None) -> int | None:
    """Kaizala's Retry-After in whole seconds, capped; None (our default applies) for an HTTP-date or junk."""
    value = (raw or "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    significant = value.lstrip("0") or "0"
    if len(significant) > 6:  # thousands of digits are junk too (and int() refuses over 4,300 of them)
        return None
    return min(int(significant), MAX_RETRY_AFTER_SECONDS)
