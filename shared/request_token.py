"""Where a token comes from in a request, and the local checks of its shape before any provider sees it."""

import re

import azure.functions as func

from . import messages as say
from .errors import InvalidRequest, InvalidToken, MissingToken
from .http import untrusted_json
from .identity import KAIZALA, Provider

MAX_TOKEN_LENGTH = 4096
# An Entra access token grows with its claims: a `groups` claim alone may list 200 object ids (about 8 KB).
MAX_ENTRA_TOKEN_LENGTH = 16 * 1024
MAX_BODY_BYTES = 64 * 1024  # a {"token": ...} body is tiny; parsing megabytes of JSON is work an attacker chooses
QUERY_TOKEN_NAMES = frozenset({"token", "accesstoken", "access_token"})
_PRINTABLE_NO_SPACE = re.compile(r"[\x21-\x7e]+")
_BEARER = re.compile(r"bearer(?:\s+(.*))?", re.IGNORECASE | re.DOTALL)


def refuse_token_in_query(req: func.HttpRequest) -> None:
    """URLs end up in access logs and browser history, so a token there is refused before anything else."""
    if any(name.lower() in QUERY_TOKEN_NAMES for name in req.params):
        raise InvalidRequest(say.TOKEN_IN_URL)


def body_token(req: func.HttpRequest) -> str | None:
    """The `token` of a JSON body `{"token": "..."}`; None for an empty body."""
    body = req.get_body()
    if not body or not body.strip():
        return None
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(say.body_too_large(MAX_BODY_BYTES))
    try:
        payload = untrusted_json.parse(body)
    except untrusted_json.NotJson:
        raise InvalidRequest(say.BODY_NOT_JSON) from None
    if not isinstance(payload, dict):
        raise InvalidRequest(say.BODY_NOT_OBJECT)
    if "token" not in payload:
        return None
    token = payload["token"]
    if not isinstance(token, str):  # null too: a card whose token call failed should hear about it
        raise InvalidRequest(say.BODY_TOKEN_NOT_TEXT)
    return token or None


def header_token(req: func.HttpRequest) -> str | None:
    """`Authorization: Bearer <token>` wins over Kaizala's own `accessToken: <token>` header."""
    authorization = req.headers.get("Authorization")
    if authorization is not None:
        match = _BEARER.fullmatch(authorization.strip())
        if match and match.group(1):
            return match.group(1).strip()
    return req.headers.get("accessToken") or None


def require_token(*candidates: str | None, providers: tuple[Provider, ...] = (KAIZALA,)) -> str:
    """The first token given; MissingToken (saying how each of `providers` gets one) when none is."""
    for token in candidates:
        if token:
            return token
    raise MissingToken.for_providers(providers)


def check_shape(token: str, max_length: int = MAX_TOKEN_LENGTH) -> None:
    """Local checks that spare the provider a call for something that cannot be a token (`max_length`: Kaizala's
    limit, or with Teams configured, Entra's larger one until the token's provider is known)."""
    if len(token) > max_length:
        kind = "a Kaizala token" if max_length == MAX_TOKEN_LENGTH else "a token this API accepts"
        raise InvalidToken(say.token_too_long(max_length, kind))
    if not _PRINTABLE_NO_SPACE.fullmatch(token):
        raise InvalidToken(say.TOKEN_CHARACTERS)
