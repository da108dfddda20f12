"""Every sentence a caller can be told when a request is refused, in one place.

The checks live where they belong (`request_token`, `claims`, `policy`, the providers, admission); what they say
lives here, so wording stays consistent and a reviewer can read every refusal on one page. A message never carries
a token, a user id or anything else a caller sent. `service` is the upstream's name as a caller reads it
("Kaizala's identity service", "Microsoft Entra ID"); `renew` says how to get a new token from that provider.

The sample API's own query errors (`shared.products`) stay beside that API: they are the sample's, not the guard's.
"""

# The upstreams, as a caller reads their names.
KAIZALA_SERVICE = "Kaizala's identity service"
ENTRA_SERVICE = "Microsoft Entra ID"

# -- The request (400, 401 missing_token) -----------------------------------------------------------------------
TOKEN_IN_URL = (
    "Do not put the token in the URL; send it as 'Authorization: Bearer <token>'. Treat that token as leaked."
)
# A parameter's name is not echoed: whatever a caller put in the URL is not repeated back.
VALIDATE_TOKEN_TAKES_NO_PARAMETERS = "ValidateToken takes no query parameters; send the token in a header or the body."
BODY_NOT_JSON = 'The body must be JSON like {"token": "<token>"}.'
BODY_NOT_OBJECT = 'The body must be a JSON object like {"token": "<token>"}.'
BODY_TOKEN_NOT_TEXT = 'The body\'s "token" must be a string.'
NO_KAIZALA_TOKEN = (
    "No Kaizala token was sent. Get one with KASClient.App.getIntegerationServiceTokenAsync and send it as "
    "'Authorization: Bearer <token>'."
)
NO_TOKEN_KAIZALA_OR_TEAMS = (
    "No token was sent. In a Kaizala card get one with KASClient.App.getIntegerationServiceTokenAsync, in a "
    "Teams tab with microsoftTeams.authentication.getAuthToken(), and send it as 'Authorization: Bearer <token>'."
)
NO_TEAMS_TOKEN = (
    "No token was sent. In a Teams tab get one with microsoftTeams.authentication.getAuthToken() and send it as "
    "'Authorization: Bearer <token>'."
)


def body_too_large(limit: int) -> str:
    return f'The body is larger than {limit} bytes; send only {{"token": "<token>"}}.'


# -- The token's shape, read before any provider is asked (401 invalid_token) -------------------------------------
TOKEN_CHARACTERS = "The token has characters no token this API accepts can have (spaces or non-printable ASCII)."
JWT_PAYLOAD_NOT_JSON = "The token looks like a JWT but its payload is not readable JSON."
JWT_PAYLOAD_NOT_OBJECT = "The token looks like a JWT but its payload is not a JSON object."
EXPIRY_NOT_A_NUMBER = "The token's expiry (exp) is not a number."
EXPIRY_NOT_USABLE = "The token's expiry (exp) is not a usable number."
KAIZALA_RENEW = "Get a new one with getIntegerationServiceTokenAsync."
TEAMS_RENEW = "Get a new one with microsoftTeams.authentication.getAuthToken."


def token_too_long(limit: int, kind: str) -> str:
    return f"The token is longer than {limit} characters; it is not {kind}."


def expired(renew: str) -> str:
    return f"The token has expired. {renew}"


# -- A provider's verdict (401 invalid_token) ---------------------------------------------------------------------
KAIZALA_REJECTED = f"Kaizala rejected the token. {KAIZALA_RENEW}"
KAIZALA_REJECTED_RECENTLY = "Kaizala rejected this token moments ago. Get a new one and try again."
TEAMS_REJECTED_RECENTLY = "This Teams token was refused moments ago. Get a new one with getAuthToken and try again."
TEAMS_NOT_ENTRA = (
    "This API takes Microsoft Teams tokens (Entra ID access tokens), and this is not one. In a Teams tab get one with "
    "microsoftTeams.authentication.getAuthToken()."
)
TEAMS_ISSUER_FORM = "The token's issuer is not an Entra ID issuer this API accepts."
TEAMS_HEADER = "The token's header is not readable."
TEAMS_ALGORITHM = "Teams tokens must be signed with RS256."
TEAMS_NO_KID = "The token names no signing key (kid)."
TEAMS_UNKNOWN_KEY = "The token is signed by a key that is not among the tenant's signing keys."
TEAMS_NOT_YET_VALID = "The token is not valid yet (nbf); check this machine's clock."
TEAMS_SIGNATURE = "The token's signature does not verify."
TEAMS_INVALID = "The token is not a valid Entra ID access token."
TEAMS_ISSUER_TENANT = "The token's issuer does not match its tenant."
TEAMS_AUDIENCE = "The token was not issued for this API (its aud is not this app registration)."
TEAMS_NO_USER = "The token names no user (oid)."


def teams_lacks_claim(claim: str) -> str:
    return f"The token lacks the {claim!r} claim."


def teams_lacks_scope(scope: str) -> str:
    return f"The token does not carry the {scope} scope."


# -- Who may call (403 forbidden) ---------------------------------------------------------------------------------
KAIZALA_USER_BLOCKED = "This Kaizala user is blocked from this API."
KAIZALA_CARD_NOT_ALLOWED = (
    "This token was issued to a card that is not allowed to call this API "
    "(its actionPackageId is not in KAIZALA_ALLOWED_ACTION_PACKAGE_IDS)."
)
KAIZALA_USER_NOT_ALLOWED = "This Kaizala user is not allowed to call this API."
KAIZALA_OFF = "This API does not accept Kaizala cards."
TEAMS_OFF = "This API does not accept Microsoft Teams sign-ins."
TEAMS_USER_BLOCKED = "This Teams user is blocked from this API."
TEAMS_TENANT_NOT_ALLOWED = "Tokens from this Microsoft Entra tenant are not allowed to call this API."
TEAMS_CLIENT_APP_NOT_ALLOWED = "The app that requested this token is not allowed to call this API."
TEAMS_AUDIENCE_CHANGED = "This token was issued for another app registration (TEAMS_CLIENT_ID)."
TEAMS_USER_NOT_ALLOWED = "This Teams user is not allowed to call this API."


# -- The upstream (502, 503) --------------------------------------------------------------------------------------
def unavailable(service: str) -> str:
    return f"{service} is unavailable right now. Try again shortly."


KAIZALA_BAD_RESPONSE = f"{KAIZALA_SERVICE} gave an answer we could not use. Try again later."
ENTRA_BAD_KEYS = f"{ENTRA_SERVICE}'s signing keys could not be read. Try again later."
KAIZALA_UNAVAILABLE = unavailable(KAIZALA_SERVICE)
KAIZALA_THROTTLED = "Kaizala asked us to slow down. Try again shortly."


def too_slow(service: str) -> str:
    return f"{service} did not answer in time. Try again shortly."


def throttled(service: str) -> str:
    return f"{service} asked us to slow down. Try again shortly."


def failing(service: str) -> str:
    return f"{service} is failing right now. Try again shortly."


def hanging(service: str) -> str:
    return f"{service} is not answering right now. Try again shortly."


def busy(service: str) -> str:
    return f"Too many checks with {service} are in progress. Try again shortly."


# -- This API (500) -----------------------------------------------------------------------------------------------
INTERNAL = "Something went wrong on our side. Try again; if it persists, tell the API owner."
MISCONFIGURED = "The API is not configured correctly. Tell the API owner to check its app settings."
REQUEST_MALFORMED = "The request is malformed."
FORBIDDEN = "This card (or user) is not allowed to call this API."
INVALID_TOKEN = "The Kaizala token is invalid or expired. Get a new one and try again."
