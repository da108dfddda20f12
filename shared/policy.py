"""Who may call: the card (action package) allowlist and the optional user allowlist, checked on every request."""

from .errors import Forbidden
from .kaizala import Identity
from .settings import ANY_ACTION_PACKAGE, Settings


def authorize(identity: Identity, settings: Settings) -> None:
    allowed_cards = settings.allowed_action_package_ids
    if ANY_ACTION_PACKAGE not in allowed_cards and identity.action_package_id not in allowed_cards:
        raise Forbidden(
            "This token was issued to a card that is not allowed to call this API "
            "(its actionPackageId is not in KAIZALA_ALLOWED_ACTION_PACKAGE_IDS)."
        )
    if settings.allowed_user_ids and identity.id not in settings.allowed_user_ids:
        raise Forbidden("This Kaizala user is not allowed to call this API.")
