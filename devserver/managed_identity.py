"""A local stand-in for the managed identity endpoint that Azure Functions (App Service) gives an app (dev and tests).

Azure sets `IDENTITY_ENDPOINT` (a URL on the app's own machine) and `IDENTITY_HEADER` (a secret) in the app's
environment; an SDK asks for a token with the App Service protocol, as MSAL's ManagedIdentityClient (which
redis-entraid uses) and azure-identity's ManagedIdentityCredential both speak it:

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=https://redis.azure.com[&client_id=...]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

    200 {"access_token": "<JWT>", "expires_on": "<epoch seconds>", "resource": "...", "token_type": "Bearer",
         "client_id": "..."}

No selector asks for the system-assigned identity; `client_id`, `mi_res_id` or `principal_id`/`object_id` pick a
user-assigned one. Errors are JSON `{"statusCode": N, "message": "..."}`, as App Service sends them: 401 without the
secret header, 403 with a wrong one, 400 for a bad request or an identity the app does not have.

Each token is an RS256 JWT shaped like an Entra ID app-only token (v1.0: `iss` https://sts.windows.net/{tid}/,
`aud` the resource, `oid` and `sub` the identity's object id, `appid` its client id), living `token_seconds`.
Like Azure's endpoint, it answers with the identity's current token for a while (`reissue_after`, a fraction of its
life: half by default; 0 issues a new token for every request). `on_issue(object_id, token)` runs for each new token
before the answer leaves: a test sets the token as a Redis user's password there.
`latency_ms` delays every answer; `failing` (a status such as 500) makes every answer that error.

In code: `with ManagedIdentityStandIn(...).serving() as stand_in: stand_in.environment()`.
"""

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from werkzeug.serving import BaseWSGIServer
from werkzeug.wrappers import Request, Response

from .wsgi import serve

API_VERSION = "2019-08-01"
PATH = "/msi/token"
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
# user-assigned selectors of the 2019-08-01 protocol (MSAL sends object_id; App Service documents principal_id)
SELECTORS = ("client_id", "mi_res_id", "principal_id", "object_id")

OnIssue = Callable[[str, str], None]  # (object id, token)


@dataclass(frozen=True, slots=True)
class Identity:
    """A managed identity: its application (client) id, its object (principal) id, and its ARM resource id."""

    client_id: str
    object_id: str
    resource_id: str

    @classmethod
    def make(cls, name: str) -> "Identity":
        """Fresh GUIDs for `name` (the resource id's last segment)."""
        return cls(
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/dev/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        )

    def selected_by(self, name: str, value: str) -> bool:
        own = {"client_id": self.client_id, "mi_res_id": self.resource_id}.get(name, self.object_id)
        return own.lower() == value.lower()


class ManagedIdentityStandIn:
    def __init__(
        self,
        *,
        system_assigned: Identity | None = None,
        user_assigned: Sequence[Identity] = (),
        token_seconds: float = 3600,
        latency_ms: float = 0,
        reissue_after: float = 0.5,
        tenant_id: str = DEFAULT_TENANT,
        on_issue: OnIssue | None = None,
    ) -> None:
        self.system_assigned = system_assigned
        self.user_assigned = tuple(user_assigned)
        self.token_seconds = token_seconds
        self.latency_ms = latency_ms
        self.reissue_after = reissue_after
        self.tenant_id = tenant_id
        self.on_issue = on_issue
        self.failing: int | None = None  # a status (e.g. 500) every request gets instead of a token
        self.secret = secrets.token_urlsafe(24)  # IDENTITY_HEADER
        self.stats: Counter[str] = Counter()  # "issued", "issued:<object id>", "reused", "refused:<status>"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self._kid = base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest()).rstrip(b"=").decode()
        self._lock = threading.Lock()  # one issue at a time: on_issue sees tokens in the order they are issued
        self._current: dict[tuple[str, str], tuple[str, float, int]] = {}  # (oid, resource): (token, issued, exp)
        self._server: BaseWSGIServer | None = None

    # --- serving ------------------------------------------------------------------------------------------------

    @contextmanager
    def serving(self, host: str = "127.0.0.1", port: int = 0) -> Iterator["ManagedIdentityStandIn"]:
        self._server = serve(self, host, port, access_log=False)
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "not serving"  # noqa: S101 - a programming error in a dev tool
        return f"http://127.0.0.1:{self._server.port}{PATH}"

    def environment(self) -> dict[str, str]:
        """What Azure puts in the app's environment for its managed identity."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.secret}

    # --- tokens -------------------------------------------------------------------------------------------------

    def issue(self, identity: Identity, resource: str) -> tuple[str, int]:
        """(token, expires_on): the identity's current token for `resource` until `reissue_after` of its life has
        passed (Azure's endpoint also answers from a cache), else a new one, which on_issue sees first."""
        with self._lock:
            now = time.time()
            current = self._current.get((identity.object_id, resource))
            if current is not None:
                token, issued, expires_on = current
                if now < issued + (expires_on - issued) * self.reissue_after:
                    self.stats["reused"] += 1
                    return token, expires_on
            expires_on = int(now + self.token_seconds)
            claims = self.claims(identity, resource, int(now), expires_on)
            token = jwt.encode(claims, self._key, "RS256", {"kid": self._kid, "x5t": self._kid})
            if self.on_issue is not None:
                self.on_issue(identity.object_id, token)
            self._current[identity.object_id, resource] = (token, now, expires_on)
            self.stats["issued"] += 1
            self.stats[f"issued:{identity.object_id}"] += 1
        return token, expires_on

    def claims(self, identity: Identity, resource: str, now: int, expires_on: int) -> dict[str, Any]:
        issuer = f"https://sts.windows.net/{self.tenant_id}/"
        return {
            "aud": resource,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "aio": secrets.token_urlsafe(40),
            "appid": identity.client_id,
            "appidacr": "2",
            "idp": issuer,
            "idtyp": "app",
            "oid": identity.object_id,
            "rh": f"0.{secrets.token_urlsafe(40)}.",
            "sub": identity.object_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_mirid": identity.resource_id,
        }

    # --- WSGI ---------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        response = self.answer(Request(environ))
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        return response(environ, start_response)

    def answer(self, request: Request) -> Response:
        if request.path.rstrip("/") != PATH:
            return self._error(404, f"Not found: the endpoint is {PATH}.")
        if request.method != "GET":
            return self._error(405, "Only GET is supported.")
        presented = request.headers.get("X-IDENTITY-HEADER")
        if presented is None:
            return self._error(401, "The X-IDENTITY-HEADER header is missing.")
        if not secrets.compare_digest(presented.encode(), self.secret.encode()):
            return self._error(403, "The X-IDENTITY-HEADER header is not this app's IDENTITY_HEADER.")
        if self.failing is not None:
            return self._error(self.failing, "An unexpected error occurred while fetching the token.")
        if request.args.get("api-version") != API_VERSION:
            return self._error(400, f"api-version must be {API_VERSION}.")
        resource = request.args.get("resource", "").strip()
        if not resource:
            return self._error(400, "The resource parameter is required.")
        identity = self._identity(request.args)
        if isinstance(identity, Response):
            return identity
        token, expires_on = self.issue(identity, resource)
        body = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
        return Response(json.dumps(body), mimetype="application/json", headers={"Cache-Control": "no-store"})

    def _identity(self, args: Mapping[str, str]) -> Identity | Response:
        chosen = [(name, args[name]) for name in SELECTORS if args.get(name)]
        if len(chosen) > 1:
            return self._error(400, "Give at most one of client_id, mi_res_id, principal_id.")
        if not chosen:
            if self.system_assigned is None:
                return self._error(400, "This app has no system-assigned managed identity.")
            return self.system_assigned
        name, value = chosen[0]
        for identity in self.user_assigned:
            if identity.selected_by(name, value):
                return identity
        return self._error(
            400, "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."
        )

    def _error(self, status: int, message: str) -> Response:
        with self._lock:
            self.stats[f"refused:{status}"] += 1
        body = json.dumps({"statusCode": status, "message": message})
        return Response(body, status=status, mimetype="application/json")
