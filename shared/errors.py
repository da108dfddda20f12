"""The failures a protected function can answer with: one typed exception per documented error code.

`shared.responses.error_response` turns any of them into the JSON body and status; nothing else maps errors.
"""

from typing import ClassVar

from . import messages
from .identity import KAIZALA, TEAMS

BEARER_CHALLENGE = 'Bearer realm="kaizala"'


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = messages.INTERNAL

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(ApiError):
    status = 400
    code = "invalid_request"
    default_message = messages.REQUEST_MALFORMED


class MissingToken(ApiError):
    status = 401
    code = "missing_token"
    default_message = messages.NO_KAIZALA_TOKEN

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": BEARER_CHALLENGE}

    @classmethod
    def for_providers(cls, providers: tuple[str, ...]) -> "MissingToken":
        """Saying where the token comes from for the providers on: a card, a Teams tab, or either."""
        if KAIZALA not in providers:
            return cls(messages.NO_TEAMS_TOKEN)
        return cls(messages.NO_TOKEN_KAIZALA_OR_TEAMS) if TEAMS in providers else cls()


class InvalidToken(ApiError):
    status = 401
    code = "invalid_token"
    default_message = messages.INVALID_TOKEN
    lasting: ClassVar[bool] = True  # the same token will be refused again: remember it (here and in the fleet)

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="invalid_token"'}

    @classmethod
    def remembered(cls, provider: str = "kaizala") -> "InvalidToken":
        """The rejection of this token, remembered (here or by the fleet) instead of checked again."""
        if provider == "teams":
            return cls(messages.TEAMS_REJECTED_RECENTLY)
        return cls(messages.KAIZALA_REJECTED_RECENTLY)


class KeyNotYetKnown(InvalidToken):
    """Signed by a key the tenant's key set did not hold when last fetched, moments ago: refused now, but not
    remembered (once the key set is fetched again, the same token may verify)."""

    lasting = False


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
    default_message = messages.FORBIDDEN


class ServerMisconfigured(ApiError):
    status = 500
    code = "server_misconfigured"
    default_message = messages.MISCONFIGURED


class InternalError(ApiError):
    pass


class IdentityBadResponse(ApiError):
    status = 502
    code = "identity_bad_response"
    default_message = messages.KAIZALA_BAD_RESPONSE


class IdentityUnavailable(ApiError):
    status = 503
    code = "identity_unavailable"
    default_message = messages.KAIZALA_UNAVAILABLE
    DEFAULT_RETRY_AFTER: ClassVar[int] = 5

    def __init__(self, message: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = self.DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        self.shed_reason: str | None = None  # answered without an upstream call: throttled, busy or unhealthy

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    @classmethod
    def too_slow(cls, service: str) -> "TooSlow":
        """The validation's deadline passed before `service` answered."""
        return TooSlow(messages.too_slow(service))


class TooSlow(IdentityUnavailable):
    """The deadline passed before the upstream answered (or before a waiter's turn came)."""


class KaizalaThrottled(IdentityUnavailable):
    """Kaizala answered 429: no miss is sent to it again until its Retry-After has passed (cache hits still are
    answered). Callers see the same `identity_unavailable` with the remaining Retry-After."""

    @classmethod
    def holding(cls, seconds: int) -> "KaizalaThrottled":
        """A 429 received earlier (here or by the fleet) still holds for `seconds`: answered without a call."""
        held = cls(messages.KAIZALA_THROTTLED, retry_after=seconds)
        held.shed_reason = "throttled"
        return held
