"""What an operator sees of the fleet cache's Redis: each failure named in words they act on, and one WARNING per
change of state (shared, skipped, degraded by a cause, shared again), never one per request.

`describe` turns whatever redis-py raised into a `Cause`; `Health` decides which failures change the state. A
failure that says the configuration is wrong (a certificate not trusted, a sign-in refused, a command the app's
Redis user may not run, a cluster redirect) warns the first time it is seen, even when other commands still work
(a read-only user reads but cannot share); transient ones (timeouts, refused or dropped connections) warn when the
breaker opens. No text of an exception is logged: it may quote a command, a key or a connection string.
"""

import logging
import re
import socket
import ssl
import threading
from dataclasses import dataclass

import redis
import redis.exceptions as errors

from .. import telemetry

log = logging.getLogger("kaizala_auth")

_NOPERM_COMMAND = re.compile(r"permissions? to (?:run|access) the '([a-z|]+)' command", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Cause:
    """Why Redis failed: `kind` is a stable word (logs, metrics); `text` is what the WARNING says."""

    kind: str
    text: str
    lasting: bool = False  # the configuration is wrong: retrying will not fix it, so say so at once


def describe(error: BaseException, *, timeout_ms: int) -> Cause:
    """The cause of `error`, from its type and its chain (redis-py wraps socket and TLS errors)."""
    chain = _chain(error)
    return _misconfigured(error, chain) or _transient(error, chain, timeout_ms)


def _misconfigured(error: BaseException, chain: list[BaseException]) -> Cause | None:
    """A cause retrying will not fix: TLS, sign-in, permissions, a name that does not resolve."""
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in _texts(chain):
        return Cause(
            "certificate",
            "its TLS certificate is not trusted (a private CA is trusted with TOKEN_CACHE_REDIS_CA_FILE)",
            lasting=True,
        )
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return Cause("tls", "the TLS handshake failed (is the port a TLS port? Azure's is 10000 or 6380)", lasting=True)
    if any(type(e).__name__ == "SignInFailed" for e in chain):  # shared.fleet.entra, not imported without it
        return Cause(
            "sign_in",
            "Microsoft Entra ID sign-in failed: the managed identity endpoint gave the app no token (is the identity "
            "assigned to the app, and AZURE_CLIENT_ID its client id?)",
            lasting=True,
        )
    if any(_is_sign_in_failure(e) for e in chain):
        return Cause(
            "sign_in",
            "sign-in failed (the password in TOKEN_CACHE_REDIS_URL, or the Microsoft Entra ID token and the "
            "identity's data access policy)",
            lasting=True,
        )
    if isinstance(error, errors.NoPermissionError):
        match = _NOPERM_COMMAND.search(str(error))
        command = f"the {match.group(1).upper()} command" if match else "a command"
        if match is None and "channel" in str(error):
            command = "the purge channel (pub/sub)"
        return Cause(
            "permission",
            f"permission denied for {command}: the app's Redis user needs read, write and pub/sub access",
            lasting=True,
        )
    if any(isinstance(e, socket.gaierror) for e in chain):
        return Cause("unresolved", "its host name does not resolve", lasting=True)
    return None


def _transient(error: BaseException, chain: list[BaseException], timeout_ms: int) -> Cause:
    # redis-py's parser turns MOVED and ASK into these (MovedError is an AskError), without the word in the text.
    if isinstance(error, errors.AskError) or (
        isinstance(error, errors.ResponseError) and str(error).startswith(("MOVED", "ASK"))
    ):
        return Cause("cluster_redirect", "answered with a cluster redirect (MOVED): reconnecting as a cluster client")
    if isinstance(error, errors.ClusterDownError | errors.SlotNotCoveredError):
        return Cause("cluster_down", "the cluster is down or some slots have no shard serving them")
    if isinstance(error, errors.TimeoutError | socket.timeout | TimeoutError):
        return Cause("timeout", f"timed out (no answer within {timeout_ms} ms)")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return Cause("refused", "refused the connection (nothing listening there, or a firewall)")
    if isinstance(error, errors.ConnectionError | ConnectionError | OSError):
        return Cause("connection", "the connection failed or was closed")
    if isinstance(error, errors.ResponseError):
        return Cause("error_reply", "answered a command with an error")
    return Cause("other", f"failed ({type(error).__name__})")


def _is_sign_in_failure(error: BaseException) -> bool:
    if isinstance(error, errors.AuthenticationError | errors.AuthenticationWrongNumberOfArgsError):
        return True
    if isinstance(error, errors.ResponseError) and str(error).startswith(("WRONGPASS", "NOAUTH")):
        return True
    # redis-entraid (TOKEN_CACHE_REDIS_AUTH=entra): the managed identity gave no token.
    return type(error).__name__ in ("RequestTokenErr", "TokenRenewalErr", "ClientAuthenticationError")


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _texts(chain: list[BaseException]) -> str:
    return " ".join(str(e) for e in chain if isinstance(e, ssl.SSLError | redis.ConnectionError))


class Health:
    """The fleet tier's state as the log tells it: None while shared, else the cause it is degraded by.
    `subject` and `consequence` say what it is the health of (the commands, or the purge subscription)."""

    def __init__(
        self,
        where: str,
        *,
        subject: str = "token cache Redis at {where}",
        consequence: str = "identities are not shared",
        reports: bool = False,
    ) -> None:
        self.where = where  # host:port; never the URL (it may hold the access key)
        self.subject = subject.format(where=where)
        self.consequence = consequence
        self.reports = reports  # each change also reaches telemetry (kaizala_auth.fleet.state_changes)
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.cause: Cause | None = None
        self._failed_operation: str | None = None

    def failed(
        self, cause: Cause, *, opened: bool, open_seconds: float, failures: int, operation: str | None = None
    ) -> None:
        """A command failed with `cause`; `opened`: this failure opened the breaker; `operation`: which of the fleet
        cache's (a permission problem is cleared only when that same operation succeeds)."""
        with self._lock:
            if cause == self.cause or not (opened or cause.lasting):
                return
            if self.cause is not None and self.cause.kind == cause.kind == "permission":
                return  # another command denied to the same user: one state, already told
            self.cause = cause
            self._failed_operation = operation
        if self.reports:
            telemetry.fleet_changed(available=False, cause=cause.kind)
        if opened:
            log.warning(
                "%s %s; it failed %d time(s) in a row: skipping it, trying again every %g s "
                "(requests are answered without sharing meanwhile)",
                self.subject,
                cause.text,
                failures,
                open_seconds,
            )
        else:
            log.warning("%s: %s; until this is fixed, %s", self.subject, cause.text, self.consequence)

    def succeeded(self, *, writes: bool, operation: str | None = None) -> None:
        """A command succeeded. A permission problem is cleared only by a write of the operation that was denied
        (a read, or another command the user may run, says nothing of it): no WARNING pair per request."""
        with self._lock:
            cause = self.cause
            if cause is None:
                return
            if cause.kind == "permission" and (not writes or operation != self._failed_operation):
                return
            self.cause = None
        if self.reports:
            telemetry.fleet_changed(available=True, cause="recovered")
        log.warning("%s answers again: sharing resumes", self.subject)
