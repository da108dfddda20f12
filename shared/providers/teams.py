"""Microsoft Teams tab tokens: Entra ID access tokens issued to the company's app registration, verified here
(signature against the tenant's published keys, issuer, audience, lifetime, scope, requesting app).

`entra_issuer` decides which provider checks a token, from what the token says about itself unverified; it
never grants anything: `verify` checks everything, and fails closed at each step.
"""

import re
from collections.abc import Callable
from typing import Any, ClassVar

import jwt

from .. import claims as unverified
from .. import messages as say
from ..errors import InvalidToken
from ..identity import TEAMS, Identity, Provider
from ..policy import CLIENT_APP_NOT_ALLOWED, TENANT_NOT_ALLOWED, Refused
from ..request_token import MAX_ENTRA_TOKEN_LENGTH
from ..settings import TeamsSettings
from .base import IdentityProvider
from .signing_keys import SERVICE, SigningKeys

SCOPE = "access_as_user"
RENEW = say.TEAMS_RENEW
V2_ISSUER = "https://login.microsoftonline.com/{tenant}/v2.0"
V1_ISSUER = "https://sts.windows.net/{tenant}/"
# Every token naming one of Entra's issuer hosts goes to the Teams provider, whatever the rest of it says, so a
# malformed Entra token is refused here rather than sent to Kaizala.
_ENTRA_HOST = re.compile(r"https://(?:login\.microsoftonline\.com|sts\.windows\.net)/.*", re.DOTALL)
_ISSUER_FORMS = re.compile(
    r"https://login\.microsoftonline\.com/(?P<v2>[0-9a-f-]{36})/v2\.0|https://sts\.windows\.net/(?P<v1>[0-9a-f-]{36})/"
)


def entra_issuer(token: str) -> str | None:
    """The token's issuer when it (unverified) names Entra ID: such a token goes to the Teams provider. None for
    any other token (Kaizala's)."""
    try:
        payload = unverified.unverified_payload(token)
    except InvalidToken:  # not a readable JWT: not Entra's (Kaizala's checks refuse it as before)
        return None
    issuer = payload.get("iss") if payload is not None else None
    return issuer if isinstance(issuer, str) and _ENTRA_HOST.fullmatch(issuer) else None


def allowed_tenant(issuer: str, settings: TeamsSettings) -> str:
    """The tenant `issuer` names, checked before any key is fetched, so a tenant we never trust costs no call to
    Entra: 403 for a tenant not allowed, 401 for an issuer in neither of Entra's two forms."""
    form = _ISSUER_FORMS.fullmatch(issuer)
    if form is None:
        raise InvalidToken(say.TEAMS_ISSUER_FORM)
    tenant_id = form.group("v2") or form.group("v1")
    if tenant_id not in settings.allowed_tenant_ids:
        raise Refused(say.TEAMS_TENANT_NOT_ALLOWED, TENANT_NOT_ALLOWED)
    return tenant_id


class Teams(IdentityProvider):
    """A Teams tab's Entra ID access token for the app registration `settings` name, verified here."""

    name: ClassVar[Provider] = TEAMS
    service: ClassVar[str] = SERVICE
    renew: ClassVar[str] = RENEW
    max_token_length: ClassVar[int] = MAX_ENTRA_TOKEN_LENGTH

    def __init__(self, settings: TeamsSettings, verifier: Callable[[], "TeamsVerifier"]) -> None:
        self.settings = settings
        self.verifier = verifier  # the process's one verifier (and its signing keys)

    def claim(self, token: str) -> bool:
        issuer = entra_issuer(token)
        if issuer is None:
            return False
        allowed_tenant(issuer, self.settings)  # a tenant we never trust: 403 before any key fetch
        return True

    def verify(self, token: str, deadline: float) -> Identity:
        return self.verifier().verify(token, self.settings, deadline)


class TeamsVerifier:
    def __init__(self, keys: SigningKeys | None = None) -> None:
        self.keys = keys or SigningKeys()

    def verify(self, token: str, settings: TeamsSettings, deadline: float) -> Identity:
        """The Teams user `token` belongs to, or a typed error (InvalidToken 401, Refused 403, IdentityUnavailable
        503 when the tenant's signing keys cannot be had before `deadline`)."""
        issuer = entra_issuer(token)
        if issuer is None:
            raise InvalidToken(say.TEAMS_NOT_ENTRA)
        tenant_id = allowed_tenant(issuer, settings)
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, RecursionError):  # older PyJWT let a deeply nested header raise RecursionError
            raise InvalidToken(say.TEAMS_HEADER) from None
        if header.get("alg") != "RS256":
            raise InvalidToken(say.TEAMS_ALGORITHM)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken(say.TEAMS_NO_KID)
        key = self.keys.key(settings.keys_url(tenant_id), kid, deadline)
        claims = _decode(token, key)
        return _identity(claims, tenant_id, settings)


def _decode(token: str, key: jwt.PyJWK) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key=key.key,
            algorithms=["RS256"],
            leeway=unverified.CLOCK_SKEW_SECONDS,
            # iss and aud have forms PyJWT cannot express; they are checked in _identity.
            options={"require": ["exp", "nbf", "iss", "aud", "tid", "oid"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken(say.expired(RENEW)) from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken(say.TEAMS_NOT_YET_VALID) from None
    except jwt.InvalidSignatureError:
        raise InvalidToken(say.TEAMS_SIGNATURE) from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(say.teams_lacks_claim(exc.claim)) from None
    except jwt.PyJWTError:
        raise InvalidToken(say.TEAMS_INVALID) from None


def _identity(claims: dict[str, Any], tenant_id: str, settings: TeamsSettings) -> Identity:
    if claims.get("tid") != tenant_id or claims.get("iss") not in (
        V2_ISSUER.format(tenant=tenant_id),
        V1_ISSUER.format(tenant=tenant_id),
    ):
        raise InvalidToken(say.TEAMS_ISSUER_TENANT)
    audience = claims.get("aud")
    if not isinstance(audience, str) or not settings.accepts_audience(audience):
        raise InvalidToken(say.TEAMS_AUDIENCE)
    scopes = claims.get("scp")
    if not isinstance(scopes, str) or SCOPE not in scopes.split(" "):
        raise InvalidToken(say.teams_lacks_scope(SCOPE))
    client_app = claims.get("azp", claims.get("appid"))
    if not isinstance(client_app, str) or client_app.lower() not in settings.allowed_client_app_ids:
        raise Refused(say.TEAMS_CLIENT_APP_NOT_ALLOWED, CLIENT_APP_NOT_ALLOWED)
    object_id = claims.get("oid")
    if not isinstance(object_id, str) or not object_id:
        raise InvalidToken(say.TEAMS_NO_USER)
    return Identity.from_teams(
        object_id.lower(),
        name=_text(claims.get("name")),
        tenant_id=tenant_id,
        user_principal_name=_text(claims.get("upn")) or _text(claims.get("preferred_username")),
        client_app_id=client_app.lower(),
        audience=audience,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
