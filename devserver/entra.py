"""A local stand-in for Entra ID as a Teams tab's SSO sees it, for one demo tenant (dev-only).

The Kaizala stand-in's server serves these routes too (devserver/kaizala.py wires them in), so its base URL is the
authority (`TEAMS_AUTHORITY`) from which the API fetches the signing keys:

- `GET /{tenant}/v2.0/.well-known/openid-configuration`, `GET /{tenant}/discovery/v2.0/keys` (`{tenant}`: a GUID,
  or `common`): discovery and the RSA public keys, shaped as login.microsoftonline.com serves them.
- `POST /v1/dev/teams-tokens`: a Teams tab access token, with options that break it in each way a test needs.
- `POST /v1/dev/teams-keys/rotate`: a new signing key; the old one leaves the key set.
- `GET /v1/dev/teams-users`: the demo tenant, client id and Teams users (from demo_users.json's `teams`).

Signing keys are RSA 2048, made for each process on first use (one costs ~50-100 ms, and most runs never need
one). Tokens carry Microsoft's real issuer (`https://login.microsoftonline.com/{tid}/v2.0`), not this server's
URL, exactly as a real token does: the authority setting says where the keys come from, never what `iss` is.
"""

import argparse
import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .wsgi import BadBody, json_error, json_object_body

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
V1_ISSUER_AUTHORITY = "https://sts.windows.net"
TEAMS_CLIENT_APP_ID = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"  # Teams desktop and mobile: a public client
DEFAULT_SCOPE = "access_as_user"
DEFAULT_TOKEN_TTL = 3600
MAX_OFFSET_SECONDS = 24 * 3600  # ttlSeconds and notBeforeSeconds may each be up to a day either way
KEYS_CACHE_CONTROL = "max-age=86400, private"  # what login.microsoftonline.com sends with its keys
COMMON_TENANT = "common"
# The two endpoints the API fetches: the Kaizala stand-in counts them and fails them under the entra_down fault.
DISCOVERY_ENDPOINTS = ("openid", "keys")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def url_rules() -> list[Rule]:
    """The routes, each endpoint named `entra.<handler>`; fresh Rules on every call (a Rule joins one Map)."""
    return [
        Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="entra.openid", methods=["GET"]),
        Rule("/<tenant>/discovery/v2.0/keys", endpoint="entra.keys", methods=["GET"]),
        Rule("/v1/dev/teams-tokens", endpoint="entra.mint", methods=["POST"]),
        Rule("/v1/dev/teams-keys/rotate", endpoint="entra.rotate", methods=["POST"]),
        Rule("/v1/dev/teams-users", endpoint="entra.users", methods=["GET"]),
    ]


def add_entra_arguments(parser: argparse.ArgumentParser) -> None:
    """The Entra ID side's flag, beside the Kaizala fault flags: Faults has a field for it, so faults_from reads it."""
    parser.add_argument(
        "--entra-down",
        action="store_true",
        help="start with the Entra ID stand-in unreachable: its discovery and keys endpoints drop every connection"
        ' (also PUT /v1/dev/faults {"entra_down": true})',
    )


def is_guid(value: object) -> bool:
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


def v2_issuer(tenant: str) -> str:
    return f"{MICROSOFT_AUTHORITY}/{tenant}/v2.0"


def v1_issuer(tenant: str) -> str:
    return f"{V1_ISSUER_AUTHORITY}/{tenant}/"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_uint(number: int) -> str:
    return _b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


# --- keys ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> "SigningKey":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        # Entra's kid (and x5t) is the base64url SHA-1 thumbprint of the key's certificate: the same shape here.
        return cls(_b64url(hashlib.sha1(der, usedforsecurity=False).digest()), private_key)

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


class KeyRing:
    """The current signing key, the only one published, and an outside key that never is. Both made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: SigningKey | None = None
        self._outside: SigningKey | None = None

    def current(self) -> SigningKey:
        with self._lock:
            if self._current is None:
                self._current = SigningKey.generate()
            return self._current

    def outside(self) -> SigningKey:
        with self._lock:
            if self._outside is None:
                self._outside = SigningKey.generate()
            return self._outside

    def rotate(self) -> tuple[SigningKey, SigningKey]:
        """(new, retired): the new key replaces the current one, which leaves the key set at once."""
        self.current()  # so there is always one to retire
        new = SigningKey.generate()  # outside the lock: it takes a while
        with self._lock:
            retired, self._current = self._current, new
        assert retired is not None  # noqa: S101 - made just above, and only ever replaced
        return new, retired


# --- what POST /v1/dev/teams-tokens accepts -------------------------------------------------------------------------


@dataclass(frozen=True)
class MintOptions:
    """Every field optional: the defaults make a token the API accepts (as the demo settings configure it)."""

    user_id: str | None = None  # None: the first demo Teams user
    tenant_id: str | None = None  # None: the demo tenant
    audience: str | None = None  # None: the demo client id
    scope: str = DEFAULT_SCOPE  # "" leaves `scp` out, as in an app-only token
    azp: str = TEAMS_CLIENT_APP_ID
    ttl_seconds: int = DEFAULT_TOKEN_TTL
    not_before_seconds: int = 0
    issuer_form: str = "v2"
    issuer: str | None = None  # a literal `iss`, overriding issuer_form's
    alg: str = "RS256"
    kid: str | None = None  # None: the signing key's own kid
    signer: str = "jwks"


def _text(value: Any) -> bool:
    """A string that is text: JSON lets a lone surrogate ("\\ud800") through, which no token can carry."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _non_empty_text(value: Any) -> bool:
    return _text(value) and bool(value)


def _seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and abs(value) <= MAX_OFFSET_SECONDS


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: value in choices


# JSON field: (MintOptions attribute, check, what the 400 says the value must be).
_MINT_FIELDS: Mapping[str, tuple[str, Callable[[Any], bool], str]] = {
    "userId": ("user_id", _text, "a string (GET /v1/dev/teams-users lists them)"),
    "tenantId": ("tenant_id", is_guid, "a GUID (8-4-4-4-12 hexadecimal digits)"),
    "audience": ("audience", _non_empty_text, "a non-empty string"),
    "scope": ("scope", _text, 'a string ("" leaves scp out)'),
    "azp": ("azp", _non_empty_text, "a non-empty string"),
    "ttlSeconds": ("ttl_seconds", _seconds, f"a whole number from -{MAX_OFFSET_SECONDS} to {MAX_OFFSET_SECONDS}"),
    "notBeforeSeconds": (
        "not_before_seconds",
        _seconds,
        f"a whole number from -{MAX_OFFSET_SECONDS} to {MAX_OFFSET_SECONDS}",
    ),
    "issuerForm": ("issuer_form", _one_of("v1", "v2"), '"v1" or "v2"'),
    "issuer": ("issuer", _non_empty_text, "a non-empty string"),
    "alg": ("alg", _one_of("RS256", "HS256", "none"), '"RS256", "HS256" or "none"'),
    "kid": ("kid", _non_empty_text, "a non-empty string"),
    "signer": ("signer", _one_of("jwks", "outside"), '"jwks" or "outside"'),
}


def mint_options(payload: Mapping[str, Any]) -> MintOptions:
    """The options a JSON body asks for; null means the default. ValueError names the first bad or unknown field
    (a misspelt option silently ignored would mint a token that does not test what it claims to)."""
    options = MintOptions()
    for name, value in payload.items():
        if name not in _MINT_FIELDS:
            raise ValueError(f"Unknown field {name!r}: the fields are {', '.join(_MINT_FIELDS)}.")
        attribute, acceptable, expected = _MINT_FIELDS[name]
        if value is None:
            continue
        if not acceptable(value):
            raise ValueError(f"{name} must be {expected}.")
        options = replace(options, **{attribute: value})
    return options


# --- the stand-in ----------------------------------------------------------------------------------------------------


class EntraStandIn:
    def __init__(self, demo: Mapping[str, Any]) -> None:
        """`demo`: demo_users.json's `teams` object."""
        self.tenant_id: str = demo["tenantId"]
        self.client_id: str = demo["clientId"]
        self.users: dict[str, dict[str, str]] = {user["id"]: user for user in demo["users"]}
        self.default_user: str = demo["users"][0]["id"]
        self.keys = KeyRing()
        self._hmac_secret = secrets.token_bytes(32)  # for alg HS256: a token no JWKS can verify
        self._subject_salt = secrets.token_bytes(16)

    # --- tokens ------------------------------------------------------------------------------------------------

    def mint(self, options: MintOptions | None = None) -> tuple[str, int]:
        """(token, exp). Raises KeyError for a user id that is not a demo Teams user."""
        options = options or MintOptions()
        user = self.users[options.user_id or self.default_user]
        now = int(time.time())
        claims = self.claims(options, user, now)
        signing_key = self.keys.outside() if options.signer == "outside" else self.keys.current()
        headers = {"kid": options.kid or signing_key.kid}
        if options.alg == "RS256":
            token = jwt.encode(claims, signing_key.private_key, algorithm="RS256", headers=headers)
        elif options.alg == "HS256":
            token = jwt.encode(claims, self._hmac_secret, algorithm="HS256", headers=headers)
        else:
            token = jwt.encode(claims, "", algorithm="none", headers=headers)
        return token, now + options.ttl_seconds

    def claims(self, options: MintOptions, user: Mapping[str, str], now: int) -> dict[str, Any]:
        """The claims of an Entra ID access token for this API, in the v2.0 or v1.0 form."""
        tenant = (options.tenant_id or self.tenant_id).lower()
        audience = options.audience or self.client_id
        v2 = options.issuer_form == "v2"
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": options.issuer or (v2_issuer(tenant) if v2 else v1_issuer(tenant)),
            "iat": now,
            "nbf": now + options.not_before_seconds,
            "exp": now + options.ttl_seconds,
            "aio": _b64url(secrets.token_bytes(60)),
            "name": user["name"],
            "oid": user["id"],
            "rh": f"0.{_b64url(secrets.token_bytes(54))}.",
            "scp": options.scope,
            "sub": self._subject(user["id"], audience),
            "tid": tenant,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "2.0" if v2 else "1.0",
        }
        if not options.scope:
            del claims["scp"]
        if v2:
            claims |= {"azp": options.azp, "azpacr": "0", "preferred_username": user["userPrincipalName"]}
        else:
            principal = user["userPrincipalName"]
            claims |= {"appid": options.azp, "appidacr": "0", "upn": principal, "unique_name": principal}
        return claims

    def _subject(self, user_id: str, audience: str) -> str:
        # Entra's `sub` is pairwise: stable for one user and one app, unrelated across apps (unlike `oid`).
        return _b64url(hmac.new(self._subject_salt, f"{user_id}|{audience}".encode(), hashlib.sha256).digest())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.keys.current().public_jwk()]}

    def openid_configuration(self, authority: str, tenant: str) -> dict[str, Any]:
        # `common` answers with Microsoft's literal template issuer, as Entra does; a tenant with its own.
        issuer = v2_issuer("{tenantid}" if tenant == COMMON_TENANT else tenant)
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{authority}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{authority}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{authority}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid", "tid", "ver"],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
        }

    # --- HTTP (routed by the Kaizala stand-in, which counts and faults the discovery endpoints) --------------------

    def on_openid(self, request: Request, tenant: str) -> Response:
        tenant = _tenant_in_path(tenant)
        if not tenant:
            return _unknown_tenant()
        body = self.openid_configuration(request.host_url.rstrip("/"), tenant)
        return _json(body, headers={"Cache-Control": KEYS_CACHE_CONTROL})

    def on_keys(self, request: Request, tenant: str) -> Response:
        # Entra's signing keys are common to every tenant: any well-formed tenant gets the same set.
        if not _tenant_in_path(tenant):
            return _unknown_tenant()
        return _json(self.jwks(), headers={"Cache-Control": KEYS_CACHE_CONTROL})

    def on_mint(self, request: Request) -> Response:
        try:
            payload = json_object_body(request)
        except BadBody as exc:
            return json_error(400, "invalid_request", str(exc))
        try:
            options = mint_options(payload)
        except ValueError as exc:
            return json_error(400, "invalid_request", str(exc))
        try:
            token, expires_at = self.mint(options)
        except KeyError:
            return json_error(404, "unknown_user", "No demo Teams user has that id (see GET /v1/dev/teams-users).")
        return _json({"token": token, "expiresAt": expires_at}, status=201, headers={"Cache-Control": "no-store"})

    def on_rotate(self, request: Request) -> Response:
        new, retired = self.keys.rotate()
        return _json({"kid": new.kid, "retired": retired.kid}, headers={"Cache-Control": "no-store"})

    def on_users(self, request: Request) -> Response:
        users = [{key: user[key] for key in ("id", "name", "userPrincipalName")} for user in self.users.values()]
        return _json({"tenantId": self.tenant_id, "clientId": self.client_id, "users": users})


def _tenant_in_path(tenant: str) -> str:
    """The tenant a discovery URL names, in lower case (a GUID, or `common`); empty when it is neither."""
    tenant = tenant.lower()
    return tenant if tenant == COMMON_TENANT or is_guid(tenant) else ""


def _unknown_tenant() -> Response:
    return json_error(404, "not_found", "The tenant must be a GUID (or common).")


def _json(body: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=dict(headers or {}))
