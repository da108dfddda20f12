"""AUTH_PROVIDERS: which kinds of token this deployment accepts, said once and explicitly.

`kaizala` (Kaizala cards), `teams` (Teams tabs), or both (`kaizala,teams`, in any order). Unset, blank or naming
anything else is a SettingsError (server_misconfigured): the app never guesses which tokens count from which
other settings happen to be set. A provider left out is off: its settings are not required, and not read.
"""

from ..identity import KAIZALA, TEAMS, Provider
from .values import SettingsError

SETTING = "AUTH_PROVIDERS"
# The order a token is offered in when both are on: Teams claims Entra's tokens, Kaizala takes the rest.
KNOWN: tuple[Provider, ...] = (TEAMS, KAIZALA)
_HOW = "set it to kaizala, teams or kaizala,teams"


def auth_providers(raw: str | None) -> tuple[Provider, ...]:
    """The providers `raw` names, in the order tokens are offered to them."""
    if raw is None or not raw.strip():
        raise SettingsError(SETTING, f"is not set: {_HOW}")
    named = [item.strip().lower() for item in raw.replace(" ", ",").split(",") if item.strip()]
    unknown = sorted({item for item in named if item not in KNOWN})
    if unknown or not named:
        raise SettingsError(SETTING, f"names {', '.join(unknown) or 'nothing'}, which is no provider: {_HOW}")
    return tuple(provider for provider in KNOWN if provider in named)
