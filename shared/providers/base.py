"""What a provider is: who checks a kind of token. One module per provider; a third is one more module.

Like Starlette's `AuthenticationBackend`: the authenticator asks each configured provider, in order, whether a
token is its kind (`claim`, which also runs the provider's local checks), and caches what `verify` answers.
"""

from abc import ABC, abstractmethod
from typing import ClassVar

from .. import claims
from ..identity import Identity, Provider


class IdentityProvider(ABC):
    name: ClassVar[Provider]  # in the cache, the fleet's records, logs and metrics
    service: ClassVar[str]  # in messages a user reads: "Kaizala's identity service", "Microsoft Entra ID"
    renew: ClassVar[str]  # how the caller gets a new token
    max_token_length: ClassVar[int]

    def claim(self, token: str) -> bool:
        """Whether `token` is this provider's kind, from what it says about itself (it grants nothing); raises a
        typed error to refuse a token of its kind by local checks, before any cache or call."""
        return True

    def expiry(self, token: str) -> float | None:
        """The token's `exp`: no cache entry outlives it. Raises InvalidToken for an expired or unreadable one."""
        return claims.expiry(token, renew=self.renew)

    @abstractmethod
    def verify(self, token: str, deadline: float) -> Identity:
        """Who `token` belongs to, or a typed error (InvalidToken, Forbidden, IdentityUnavailable, ...), answered by
        `deadline` (a time.monotonic() value)."""
