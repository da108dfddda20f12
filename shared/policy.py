"""Who may call, checked on every request, cached identities included.

Kaizala users: the card (action package) allowlist, the optional user allowlist and the user blocklist (the
KAIZALA_ settings). Teams users: the tenant allowlist, the optional user allowlist and the blocklist (the TEAMS_
settings), the requesting app and the token's audience; a Teams identity is refused outright when Teams is not
configured. A blocked user is refused first; blocklists compare ids trimmed and case-folded
(`identity.comparable_id`), as purges do. Allowlists compare them exactly: folding one could only let more in.
"""

from . import messages as say
from .errors import Forbidden
from .identity import TEAMS, Identity, comparable_id
from .settings import ANY_ACTION_PACKAGE, Settings

CARD_NOT_ALLOWED = "card not allowed"
USER_NOT_ALLOWED = "user not allowed"
USER_BLOCKED = "user blocked"
TENANT_NOT_ALLOWED = "tenant not allowed"
CLIENT_APP_NOT_ALLOWED = "client app not allowed"
TEAMS_OFF = "teams not configured"
KAIZALA_OFF = "kaizala not configured"
AUDIENCE_CHANGED = "issued for another app registration"


class Refused(Forbidden):
    """A valid token the policy refuses; `reason` is for the log (one of the constants above)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal(identity: Identity, settings: Settings) -> Refused | None:
    """Why `identity` may not call under `settings`, or None when it may."""
    if identity.provider == TEAMS:
        return _teams_refusal(identity, settings)
    if not settings.kaizala_on:  # Kaizala was switched off: identities it vouched for earlier no longer count
        return Refused(say.KAIZALA_OFF, KAIZALA_OFF)
    if comparable_id(identity.id) in settings.blocked_user_ids:
        return Refused(say.KAIZALA_USER_BLOCKED, USER_BLOCKED)
    allowed_cards = settings.allowed_action_package_ids
    if allowed_cards != {ANY_ACTION_PACKAGE} and identity.action_package_id not in allowed_cards:
        return Refused(say.KAIZALA_CARD_NOT_ALLOWED, CARD_NOT_ALLOWED)
    if settings.allowed_user_ids and identity.id not in settings.allowed_user_ids:
        return Refused(say.KAIZALA_USER_NOT_ALLOWED, USER_NOT_ALLOWED)
    return None


def _teams_refusal(identity: Identity, settings: Settings) -> Refused | None:
    teams = settings.teams
    if teams is None:  # Teams was switched off: identities it vouched for earlier no longer count
        return Refused(say.TEAMS_OFF, TEAMS_OFF)
    if comparable_id(identity.id) in teams.blocked_user_ids:
        return Refused(say.TEAMS_USER_BLOCKED, USER_BLOCKED)
    if identity.tenant_id not in teams.allowed_tenant_ids:
        return Refused(say.TEAMS_TENANT_NOT_ALLOWED, TENANT_NOT_ALLOWED)
    if identity.client_app_id not in teams.allowed_client_app_ids:
        return Refused(say.TEAMS_CLIENT_APP_NOT_ALLOWED, CLIENT_APP_NOT_ALLOWED)
    if identity.audience is None or not teams.accepts_audience(identity.audience):
        return Refused(say.TEAMS_AUDIENCE_CHANGED, AUDIENCE_CHANGED)
    if teams.allowed_user_ids and identity.id not in teams.allowed_user_ids:
        return Refused(say.TEAMS_USER_NOT_ALLOWED, USER_NOT_ALLOWED)
    return None


def allows(identity: Identity, settings: Settings) -> bool:
    return refusal(identity, settings) is None
