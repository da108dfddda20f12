"""The hardened HTTP client every upstream call goes through (Kaizala's users/me, Entra ID's signing keys).

Retries, connection reuse and timeouts come from requests + urllib3 (`HTTPAdapter(max_retries=Retry(...))`),
not from a loop of ours. One deadline bounds the whole call: connects, retries, headers and body; at the deadline
any read still in progress is cut off. No cookies in either direction, no redirects, no proxy from the
environment, and every answer's body is read to its end (bounded), so a "no" returns its connection to the pool
like a "yes" does.
"""

import logging
import time
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from .. import messages as say
from ..errors import ApiError, IdentityUnavailable
from ..forking import reset_in_child
from .deadline import DeadlineAdapter, DeadlinePassed, DeadlineTimeout, cut_at

log = logging.getLogger("kaizala_auth")

MAX_BODY_BYTES = 64 * 1024
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


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes | None  # None: larger than MAX_BODY_BYTES


class Upstream:
    """One upstream service, called within deadlines. `service` names it in messages and logs ("Kaizala's
    identity service"); `log_name` is the short name log lines start with ("kaizala")."""

    def __init__(self, service: str, log_name: str, session: requests.Session | None = None) -> None:
        self.service = service
        self.log_name = log_name
        self.session = session or build_session()
        if session is None:
            reset_in_child(self, _new_session)

    def too_slow(self) -> IdentityUnavailable:
        return IdentityUnavailable.too_slow(self.service)

    def unavailable(self, retry_after: int | None = None) -> IdentityUnavailable:
        return IdentityUnavailable(say.unavailable(self.service), retry_after)

    def get(self, url: str, headers: dict[str, str], deadline: float) -> Answer:
        """The answer to `GET url`, or IdentityUnavailable (failed, or too slow for `deadline`, a
        `time.monotonic()` value)."""
        with cut_at(deadline) as connections:
            try:
                return self._get(url, headers, deadline)
            except ApiError:
                if connections.cut:  # whatever a cut-off read looked like, the answer is: too slow
                    raise self.too_slow() from None
                raise

    def _get(self, url: str, headers: dict[str, str], deadline: float) -> Answer:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise DeadlinePassed()
            response = self.session.get(
                url,
                headers=headers,
                # requests accepts a urllib3 Timeout as it is (HTTPAdapter.send); its type stubs do not say so.
                timeout=DeadlineTimeout(deadline, connect_cap=left * CONNECT_SHARE),  # type: ignore[arg-type]
                allow_redirects=False,  # a token header must never travel to another host
                stream=True,  # the body is read here, bounded in size and by the deadline
            )
        except (requests.Timeout, DeadlinePassed):
            raise self.too_slow() from None
        except requests.RequestException as exc:
            # A read timeout (with read retries off) reaches us wrapped as a ConnectionError; a read cut off at
            # the deadline as a broken connection: both mean "too slow", not "failed".
            if _timed_out(exc) or time.monotonic() >= deadline:
                raise self.too_slow() from None
            log.warning("%s request failed: %s", self.log_name, type(exc).__name__)
            raise self.unavailable() from None
        with response:
            return Answer(response.status_code, response.headers, self._read_body(response, deadline))

    def _read_body(self, response: requests.Response, deadline: float) -> bytes | None:
        """The whole body, or None when it is larger than MAX_BODY_BYTES. Read to its end whatever the status, so
        the connection goes back to the pool; given up (and the connection closed) at the deadline."""
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := response.raw.read1(_READ_CHUNK):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return None  # not drained: `with response` closes this connection instead of pooling it
                chunks.append(chunk)
                if time.monotonic() >= deadline:
                    raise self.too_slow()
        except (HTTPError, OSError) as exc:  # cut mid-body, a read timeout, a body that does not decode
            log.warning("%s answer broke off: %s", self.log_name, type(exc).__name__)
            raise self.unavailable() from None
        response.raw.release_conn()  # read to the end: the connection is clean and can serve the next call
        return b"".join(chunks)


def _new_session(client: Upstream) -> None:
    """A forked child must not share the parent's pooled connections: both would write requests on one socket and
    each read whichever answer came first, another caller's identity included."""
    client.session = build_session()


def _timed_out(exc: requests.RequestException) -> bool:
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, TimeoutError | ReadTimeoutError)
