"""A test-side Entra ID: RSA signing keys, their JWKS, and Teams tab tokens that differ from a valid one in
exactly the respect a test names."""

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.helpers import secret

TENANT = "8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70"
OTHER_TENANT = "0b9d7e5c-3a1f-4c28-b6e4-9f2a7c1d5e83"
CLIENT_ID = "6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d"
TEAMS_DESKTOP = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"
TEAMS_WEB = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
OUTLOOK_WEB = "bc59ab01-8403-45c6-8796-ac3ef710b3e3"
USER = "3f2b8c1a-7d4e-4b6f-9a0c-1e5d2f8b7c6a"
OTHER_USER = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


class SigningKey:
    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or uuid.uuid4().hex[:20]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "x5t": self.kid}


class Entra:
    """The keys a tenant publishes (`published`) and a minting function. `current` signs by default."""

    def __init__(self) -> None:
        self.current = SigningKey()
        self.published = [self.current]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.published]}

    def rotate(self) -> SigningKey:
        """A new current key; the old one is no longer published."""
        self.current = SigningKey()
        self.published = [self.current]
        return self.current

    def claims(
        self, *, version: str = "2.0", tenant: str = TENANT, user: str = USER, ttl: float = 3600
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": CLIENT_ID if version == "2.0" else f"api://contoso.example/{CLIENT_ID}",
            "iss": f"https://login.microsoftonline.com/{tenant}/v2.0"
            if version == "2.0"
            else f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": int(now + ttl),
            "name": "Asha Rao",
            "oid": user,
            "scp": "access_as_user",
            "sub": uuid.uuid4().hex,
            "tid": tenant,
            "uti": uuid.uuid4().hex,
            "ver": version,
        }
        if version == "2.0":
            claims |= {"azp": TEAMS_DESKTOP, "azpacr": "0", "preferred_username": "asha@contoso.example"}
        else:
            claims |= {"appid": TEAMS_WEB, "appidacr": "0", "upn": "asha@contoso.example"}
        return claims

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        algorithm: str = "RS256",
        **changes: Any,
    ) -> str:
        """A token signed by `key` (default: the current published key); `changes` replace claims (None
        removes one)."""
        body = {**(claims or self.claims()), **changes}
        body = {name: value for name, value in body.items() if value is not None}
        signer = key or self.current
        header = {name: value for name, value in {"kid": signer.kid, **(headers or {})}.items() if value is not None}
        if algorithm == "RS256":
            token = jwt.encode(body, signer.private, algorithm="RS256", headers=header)
        elif algorithm == "none":
            token = jwt.encode(body, None, algorithm="none", headers=header)
        else:
            token = jwt.encode(
                body, "a-shared-secret-anyone-could-know-0123456789", algorithm=algorithm, headers=header
            )
        return secret(token)
