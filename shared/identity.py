"""Who called: the one type every module passes around (kept apart from the HTTP clients, so a function loads
without importing requests)."""

from dataclasses import dataclass, field
from typing import Literal

Provider = Literal["kaizala", "teams"]
KAIZALA: Provider = "kaizala"
TEAMS: Provider = "teams"


def comparable_id(user_id: str) -> str:
    """The one way user ids are compared wherever an operator names them (the blocklists, purges): trimmed and
    case-folded, so an id pasted in capitals, or with a stray space, still matches."""
    return user_id.strip().casefold()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called, as the provider that checked the token says: Kaizala (users/me) or Entra ID (a Teams tab's
    token). Phone numbers and user principal names are kept out of repr so they cannot reach a log by accident."""

    id: str  # Kaizala's user id, or Entra's object id (oid)
    name: str | None
    phone_number: str | None = field(repr=False)
    picture_url: str | None
    action_package_id: str | None  # the card that minted a Kaizala token
    provider: Provider = KAIZALA
    tenant_id: str | None = None  # Teams: the user's Entra tenant
    user_principal_name: str | None = field(default=None, repr=False)  # Teams
    # Teams: the app that asked for the token (azp/appid) and the token's aud, which the policy re-checks on every
    # request, as it does a Kaizala token's card: a settings change applies to cached identities too.
    client_app_id: str | None = None
    audience: str | None = None

    @classmethod
    def from_teams(
        cls,
        object_id: str,
        *,
        name: str | None,
        tenant_id: str,
        user_principal_name: str | None,
        client_app_id: str,
        audience: str,
    ) -> "Identity":
        return cls(
            id=object_id,
            name=name,
            phone_number=None,
            picture_url=None,
            action_package_id=None,
            provider=TEAMS,
            tenant_id=tenant_id,
            user_principal_name=user_principal_name,
            client_app_id=client_app_id,
            audience=audience,
        )

    def to_json(self) -> dict[str, str | None]:
        if self.provider == TEAMS:
            return {
                "provider": TEAMS,
                "id": self.id,
                "name": self.name,
                "tenantId": self.tenant_id,
                "userPrincipalName": self.user_principal_name,
            }
        return {  # exactly Kaizala's five fields, as before Teams existed
            "id": self.id,
            "name": self.name,
            "phoneNumber": self.phone_number,
            "pictureUrl": self.picture_url,
            "actionPackageId": self.action_package_id,
        }
