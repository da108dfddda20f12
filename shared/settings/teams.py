"""Microsoft Teams tabs (Entra ID single sign-on): which app registration, tenants, client apps and users."""

import re
from dataclasses import dataclass

from .values import SettingsError, https_url, optional_list

DEFAULT_TEAMS_AUTHORITY = "https://login.microsoftonline.com"
# The Microsoft Teams clients that request a tab's token (Microsoft's tab SSO documentation): desktop and mobile,
# and web. A tab extended to Microsoft 365 or Outlook adds their ids (docs/teams.md lists them).
TEAMS_CLIENT_APP_IDS = frozenset({"1fec8e78-bce4-4aaf-ab1b-5451cc387264", "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"})
TEAMS_PREFIX = "TEAMS_"  # every Teams setting's name starts with it
_APPLICATION_ID_URI = re.compile(r"api://[^/\s]+/(?P<client_id>[^/\s]+)")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class TeamsSettings:
    """Who may sign in from a Teams tab: tokens for `client_id`, from these tenants, requested by these apps."""

    client_id: str
    application_id_uri: str | None  # api://<host>/<client id>, the `aud` of the registration's v1 tokens
    allowed_tenant_ids: frozenset[str]
    allowed_client_app_ids: frozenset[str]
    authority: str  # where signing keys are fetched from; tokens always carry Microsoft's own issuer strings
    allowed_user_ids: frozenset[str]
    blocked_user_ids: frozenset[str]

    def keys_url(self, tenant_id: str) -> str:
        return f"{self.authority}/{tenant_id}/discovery/v2.0/keys"

    def accepts_audience(self, audience: str) -> bool:
        """A token for this API names the client id (v2 tokens) or the Application ID URI (v1 tokens) as `aud`.
        The URI is compared whole: another app in the tenant may register `api://<tenant id>/<our client id>`."""
        return audience.lower() in (self.client_id, f"api://{self.client_id}") or audience == self.application_id_uri


def teams_settings(values: dict[str, str | None]) -> TeamsSettings | None:
    """None (Teams off) when no TEAMS_ setting is set. Set any, and the client id and the tenants are required:
    a half-configured Teams sign-in fails closed rather than guessing."""
    if not any((raw or "").strip() for name, raw in values.items() if name.startswith(TEAMS_PREFIX)):
        return None
    client_id = (values.get("TEAMS_CLIENT_ID") or "").strip().lower()
    if not client_id:
        raise SettingsError(
            "TEAMS_CLIENT_ID", "is not set, but other TEAMS_ settings are: set the app registration's client id"
        )
    if not _GUID.fullmatch(client_id):
        raise SettingsError("TEAMS_CLIENT_ID", "must be the app registration's client id (a GUID)")
    tenants = _guids("TEAMS_ALLOWED_TENANT_IDS", values.get("TEAMS_ALLOWED_TENANT_IDS"), required=True)
    client_apps = _guids("TEAMS_ALLOWED_CLIENT_APP_IDS", values.get("TEAMS_ALLOWED_CLIENT_APP_IDS"), required=False)
    return TeamsSettings(
        client_id=client_id,
        application_id_uri=_application_id_uri(values.get("TEAMS_APPLICATION_ID_URI"), client_id),
        allowed_tenant_ids=tenants,
        allowed_client_app_ids=client_apps or TEAMS_CLIENT_APP_IDS,
        authority=_authority(values.get("TEAMS_AUTHORITY")),
        allowed_user_ids=_guids("TEAMS_ALLOWED_USER_IDS", values.get("TEAMS_ALLOWED_USER_IDS"), required=False),
        blocked_user_ids=_guids("TEAMS_BLOCKED_USER_IDS", values.get("TEAMS_BLOCKED_USER_IDS"), required=False),
    )


def _application_id_uri(raw: str | None, client_id: str) -> str | None:
    uri = (raw or "").strip()
    if not uri:
        return None
    match = _APPLICATION_ID_URI.fullmatch(uri)
    if match is None or match.group("client_id").lower() != client_id:
        raise SettingsError(
            "TEAMS_APPLICATION_ID_URI", "must be api://<the tab's host>/<TEAMS_CLIENT_ID> (Expose an API, in Entra ID)"
        )
    return uri


def _guids(name: str, raw: str | None, *, required: bool) -> frozenset[str]:
    """Entra ids are GUIDs: anything else (`*`, `common`, `organizations`, a typo) is refused, never widened."""
    if required and not (raw or "").strip():
        raise SettingsError(name, 'is not set: list the allowed ids, comma-separated (there is no "any" value)')
    items = frozenset(item.lower() for item in optional_list(name, raw))
    if not all(_GUID.fullmatch(item) for item in items):
        raise SettingsError(name, 'must list GUIDs only, comma-separated (there is no "any" value)')
    return items


def _authority(raw: str | None) -> str:
    # Signing keys decide which tokens are genuine.
    return https_url("TEAMS_AUTHORITY", (raw or "").strip().rstrip("/"), DEFAULT_TEAMS_AUTHORITY)
