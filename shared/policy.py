"""Who may call: the card (action package) allowlist, the optional user allowlist and the user blocklist, checked
on every request, cached identities included."""

from .errors import Forbidden
from .identity import Identity
from .settings import ANY_ACTION_PACKAGE, Settings

CARD_NOT_ALLOWED = "card not allowed"
USER_NOT_ALLOWED = "user not allowed"
USER_BLOCKED = "user blocked"


class Refused(Forbidden):
    """A valid token the policy refuses; `reason` is for the log (one of the constants above)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal(identity: Identity, settings: Settings) -> Refused | None:
    """Why `identity` may not call under `settings`, or None when it may. A blocked user is refused first."""
    if identity.id in settings.blocked_user_ids:
        return Refused("This Kaizala user is blocked from this API.", USER_BLOCKED)
    allowed_cards = settings.allowed_action_package_ids
    if allowed_cards != {ANY_ACTION_PACKAGE} and identity.action_package_id not in allowed_cards:
        return Refused(
            "This token was issued to a card that is not allowed to call this API "
            "(its actionPackageId is not in KAIZALA_ALLOWED_ACTION_PACKAGE_IDS).",
            CARD_NOT_ALLOWED,
        )
    if settings.allowed_user_ids and identity.id not in settings.allowed_user_ids:
        return Refused("This Kaizala user is not allowed to call this API.", USER_NOT_ALLOWED)
    return None


def authorize(identity: Identity, settings: Settings) -> None:
    refused = refusal(identity, settings)
    if refused is not None:
        raise refused


def allows(identity: Identity, settings: Settings) -> bool:
    return refusal(identity, settings) is None
