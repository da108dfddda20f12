"""The Kaizala identity client: asks `GET users/me` who a token belongs to.

Retries, connection reuse and timeouts come from requests + urllib3 (`HTTPAdapter(max_retries=Retry(...))`),
not from a loop of ours. Every upstream outcome maps to exactly one typed error.
"""

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import IdentityBadResponse, IdentityUnavailable, InvalidToken

log = logging.getLogger("kaizala_auth")

MAX_BODY_BYTES = 64 * 1024
MAX_RETRY_AFTER_SECONDS = 300
REJECTED_STATUSES = frozenset({400, 401, 403})


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called, as Kaizala says. The phone number is kept out of repr so it cannot reach a log by accident."""

    id: str
    name: str | None
    phone_number: str | None = field(repr=False)
    picture_url: str | None
    action_package_id: str | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "name": self.name,
            "phoneNumber": self.phone_number,
            "pictureUrl": self.picture_url,
            "actionPackageId": self.action_package_id,
        }


def build_session() -> requests.Session:
    retry = Retry(
        total=2,
        connect=2,
        read=0,  # a read timeout already cost a whole timeout: retrying it would double the worst case
        status=2,
        other=0,
        redirect=0,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        backoff_factor=0.1,
        backoff_max=0.5,
        respect_retry_after_header=False,  # an upstream Retry-After must not make us sleep inside a request
        raise_on_status=False,
    )
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc from the environment: the token goes to the configured URL only
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class KaizalaClient:
    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session or build_session()

    def fetch_identity(self, token: str, url: str, timeout_seconds: float) -> Identity:
        try:
            response = self.session.get(
                url,
                headers={"accessToken": token, "Accept": "application/json"},
                # Three connects fit in one timeout, so the whole call stays near twice the timeout at worst.
                timeout=(timeout_seconds / 3, timeout_seconds),
                allow_redirects=False,  # the accessToken header must never travel to another host
                stream=True,
            )
        except requests.Timeout:
            raise IdentityUnavailable("Kaizala's identity service did not answer in time. Try again shortly.") from None
        except requests.RequestException as exc:
            log.warning("kaizala request failed: %s", type(exc).__name__)
            raise IdentityUnavailable() from None
        with response:
            return _identity_from(response)


def _identity_from(response: requests.Response) -> Identity:
    status = response.status_code
    if status in REJECTED_STATUSES:
        raise InvalidToken("Kaizala rejected the token. Get a new one with getIntegerationServiceTokenAsync.")
    if status == 429 or status >= 500:
        raise IdentityUnavailable(retry_after=_retry_after(response.headers.get("Retry-After")))
    if status != 200:
        log.warning("kaizala answered unexpected status %d", status)
        raise IdentityBadResponse()
    payload = _json_body(response)
    user_id = payload.get("id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise IdentityBadResponse()
    return Identity(
        id=user_id,
        name=_text(payload.get("name")),
        phone_number=_text(payload.get("phoneNumber")),
        picture_url=_text(payload.get("pictureUrl")),
        action_package_id=_text(payload.get("actionPackageId")),
    )


def _json_body(response: requests.Response) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=16 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise IdentityBadResponse()
            chunks.append(chunk)
    except requests.RequestException:  # connection broken mid-body
        raise IdentityUnavailable() from None
    try:
        payload = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise IdentityBadResponse() from None
    if not isinstance(payload, dict):
        raise IdentityBadResponse()
    return payload


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _retry_after(raw: str | None) -> int | None:
    value = (raw or "").strip()
    if not (value.isascii() and value.isdigit()):
        return None  # an HTTP-date or junk: our own default applies
    return min(int(value), MAX_RETRY_AFTER_SECONDS)
