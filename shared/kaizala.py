"""The Kaizala identity client: asks `GET users/me` who a token belongs to, within one deadline.

Retries, connection reuse and timeouts come from requests + urllib3 (`HTTPAdapter(max_retries=Retry(...))`),
not from a loop of ours. Every upstream outcome maps to exactly one typed error.

The client keeps no per-response state between calls (no cookies in either direction) and always reads an
answer's body to its end (bounded), so a "no" returns its connection to the pool like a "yes" does.
"""

import logging
import os
import time
import weakref
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from . import untrusted_json
from .deadline import DeadlineAdapter, DeadlinePassed, DeadlineTimeout, cut_at
from .errors import ApiError, IdentityBadResponse, IdentityUnavailable, InvalidToken, KaizalaThrottled
from .identity import Identity

log = logging.getLogger("kaizala_auth")

MAX_BODY_BYTES = 64 * 1024
MAX_RETRY_AFTER_SECONDS = 300
REJECTED_STATUSES = frozenset({400, 401, 403})
IDENTITY_FIELDS = ("id", "name", "phoneNumber", "pictureUrl", "actionPackageId")
CONNECT_SHARE = 1 / 3  # a connect attempt may use at most this share of the whole deadline
_READ_CHUNK = 16 * 1024


def build_session() -> requests.Session:
    retry = Retry(
        total=2,
        connect=2,
        read=0,  # a read timeout means the deadline is spent: there is no time left to retry in
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
    # No cookie is ever stored or sent: a Set-Cookie in one caller's answer must never travel with the next
    # caller's token (an upstream or front end that trusts its cookie would answer with the wrong identity).
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = DeadlineAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class KaizalaClient:
    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session or build_session()
        if session is None:
            _new_session_after_fork(self)

    def fetch_identity(self, token: str, url: str, deadline: float) -> Identity:
        """Who `token` belongs to, or a typed error; gives up at `deadline` (a `time.monotonic()` value): at
        that moment any read still in progress is cut off."""
        with cut_at(deadline) as connections:
            try:
                return self._fetch(token, url, deadline)
            except ApiError:
                if connections.cut:  # whatever a cut-off read looked like, the answer is: too slow
                    raise IdentityUnavailable.too_slow() from None
                raise

    def _fetch(self, token: str, url: str, deadline: float) -> Identity:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise DeadlinePassed()
            response = self.session.get(
                url,
                headers={"accessToken": token, "Accept": "application/json"},
                # requests accepts a urllib3 Timeout as it is (HTTPAdapter.send); its type stubs do not say so.
                timeout=DeadlineTimeout(deadline, connect_cap=left * CONNECT_SHARE),  # type: ignore[arg-type]
                allow_redirects=False,  # the accessToken header must never travel to another host
                stream=True,  # the body is read here, bounded in size and by the deadline
            )
        except (requests.Timeout, DeadlinePassed):
            raise IdentityUnavailable.too_slow() from None
        except requests.RequestException as exc:
            # A read timeout (with read retries off) reaches us wrapped as a ConnectionError; a read cut off at
            # the deadline as a broken connection: both mean "too slow", not "failed".
            if _timed_out(exc) or time.monotonic() >= deadline:
                raise IdentityUnavailable.too_slow() from None
            log.warning("kaizala request failed: %s", type(exc).__name__)
            raise IdentityUnavailable() from None
        with response:
            body = _read_body(response, deadline)
            return _identity_from(response, body)


def _new_session_after_fork(client: KaizalaClient) -> None:
    """A forked child must not share the parent's pooled connections: both would write requests on one socket and
    each read whichever answer came first, another caller's identity included."""
    ref = weakref.ref(client)

    def in_child() -> None:
        if (alive := ref()) is not None:
            alive.session = build_session()

    os.register_at_fork(after_in_child=in_child)


def _timed_out(exc: requests.RequestException) -> bool:
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, TimeoutError | ReadTimeoutError)


def _read_body(response: requests.Response, deadline: float) -> bytes | None:
    """The whole body, or None when it is larger than MAX_BODY_BYTES. Read to its end whatever the status, so the
    connection goes back to the pool; given up (and the connection closed) at the deadline."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.raw.read1(_READ_CHUNK):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None  # not drained: `with response` closes this connection instead of pooling it
            chunks.append(chunk)
            if time.monotonic() >= deadline:
                raise IdentityUnavailable.too_slow()
    except (HTTPError, OSError) as exc:  # cut mid-body, a read timeout, a body that does not decode
        log.warning("kaizala answer broke off: %s", type(exc).__name__)
        raise IdentityUnavailable() from None
    response.raw.release_conn()  # read to the end: the connection is clean and can serve the next call
    return b"".join(chunks)


def _identity_from(response: requests.Response, body: bytes | None) -> Identity:
    status = response.status_code
    if status in REJECTED_STATUSES:
        raise InvalidToken("Kaizala rejected the token. Get a new one with getIntegerationServiceTokenAsync.")
    if status == 429:
        raise KaizalaThrottled(retry_after=_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        raise IdentityUnavailable(retry_after=_retry_after(response.headers.get("Retry-After")))
    if status != 200:
        log.warning("kaizala answered unexpected status %d", status)
        raise IdentityBadResponse()
    if body is None:
        raise IdentityBadResponse()
    payload = _json_object(body)
    user_id = payload.get("id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise IdentityBadResponse()
    if not all(_encodable(payload.get(name)) for name in IDENTITY_FIELDS):
        raise IdentityBadResponse()  # a lone surrogate ("\ud800") is valid JSON but no text anyone can store
    return Identity(
        id=user_id,
        name=_text(payload.get("name")),
        phone_number=_text(payload.get("phoneNumber")),
        picture_url=_text(payload.get("pictureUrl")),
        action_package_id=_text(payload.get("actionPackageId")),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = untrusted_json.parse(body)
    except untrusted_json.NotJson:
        raise IdentityBadResponse() from None
    if not isinstance(payload, dict):
        raise IdentityBadResponse()
    return payload


def _encodable(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _retry_after(raw: str | None) -> int | None:
    """Kaizala's Retry-After in whole seconds, capped; None (our default applies) for an HTTP-date or junk."""
    value = (raw or "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    significant = value.lstrip("0") or "0"
    if len(significant) > 6:  # thousands of digits are junk too (and int() refuses over 4,300 of them)
        return None
    return min(int(significant), MAX_RETRY_AFTER_SECONDS)
