"""What the fleet cache writes to Redis, derived so that reading or writing Redis yields nothing.

Everything comes from HKDF-SHA256 over the token, salted with the deployment's secret (TOKEN_CACHE_REDIS_SECRET),
one label per use, so no derived value can stand in for another:

- the key name: one-way, and unlike the in-process cache key (a plain SHA-256 of the token) it cannot be
  computed by anyone holding a token but not the secret;
- the AES-256-GCM key of the value: only a request carrying the token (on an instance holding the secret) can open
  it. The secret matters for writers too: without it, anyone able to write to Redis could seal a made-up identity
  under a made-up JWT-shaped token and present that token;
- the AAD binds a value to its version and key name, so a value moved to another key name does not open.

User tags (the purge index) are HMAC-SHA256 of the user id under a key derived from the secret alone: Kaizala
user ids can be guessed or learnt elsewhere, and a plain hash of a guessable id is confirmed by hashing the guess.
Without the secret a tag says nothing; with it, every instance (and the purge command) computes the same tag.

Any value that fails to open (tampered, forged, truncated, another version, another deployment's secret, another
token) is None: a miss, never an exception.
"""

import hashlib
import hmac
import json
import math
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..identity import KAIZALA, TEAMS, Identity, Provider, comparable_id

VERSION = 2  # 2: identities name their provider (Kaizala or Teams); a version-1 value is a miss
PADDED_SIZES = (512, 1024, 2048, 4096)  # every sealed value's plaintext is one of these (or a multiple of the last)
_NONCE_BYTES = 12
_TAG_BYTES = 16
_IDENTITY = b"identity"
_TOKEN_LABEL = b"kaizala-auth/fleet/v1/key-name+aes-gcm-key"
_TAG_LABEL = b"kaizala-auth/fleet/v1/user-tag-key"
_NAMESPACE_LABEL = b"kaizala-auth/fleet/v1/namespace"
_DEPLOYMENT_LABEL = b"kaizala-auth/fleet/v1/deployment-key/"
_TEXT_FIELDS = (
    "name",
    "phone_number",
    "picture_url",
    "action_package_id",
    "tenant_id",
    "user_principal_name",
    "client_app_id",
    "audience",
)
_PROVIDERS: dict[object, Provider] = {KAIZALA: KAIZALA, TEAMS: TEAMS}


@dataclass(frozen=True, slots=True)
class Sealed:
    """An identity as stored in Redis, and until when (wall clock, seconds) it may be used."""

    identity: Identity
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """What one token derives to: `name` addresses Redis; `aead_key` never leaves the process."""

    name: str
    aead_key: bytes


class Sealer:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("a sealing secret is required")
        self._secret = secret
        self._salt = hashlib.sha256(secret).digest()
        self._tag_key = _hkdf(secret, self._salt, _TAG_LABEL, 32)
        # Names of one deployment share a prefix no other deployment's names have: `purge --all` and the
        # fleet-wide throttle then touch only this deployment's keys when several share one Redis.
        self.namespace = "kzc:" + _hkdf(secret, self._salt, _NAMESPACE_LABEL, 6).hex()

    def keys(self, token: str) -> TokenKeys:
        # One HKDF expansion, split: the name and the key are independent parts of one output (half the cost).
        derived = _hkdf(token.encode(), self._salt, _TOKEN_LABEL, 20 + 32)
        return TokenKeys(name=derived[:20].hex(), aead_key=derived[20:])

    def user_tag(self, user_id: str) -> str:
        """Of the id as ids are compared (`comparable_id`): a purge names the user as the blocklists do."""
        return hmac.new(self._tag_key, comparable_id(user_id).encode(), hashlib.sha256).hexdigest()[:32]

    def deployment_keys(self, purpose: str) -> TokenKeys:
        """Keys for a fleet-wide record (the throttle), sealed like a token's so a writer cannot forge it."""
        label = _DEPLOYMENT_LABEL + purpose.encode()
        return TokenKeys(name=f"{self.namespace}:{purpose}", aead_key=_hkdf(self._secret, self._salt, label, 32))

    def seal_identity(self, keys: TokenKeys, identity: Identity, expires_at: float) -> bytes:
        record = {field: getattr(identity, field) for field in ("id", "provider", *_TEXT_FIELDS)}
        record["expires_at"] = expires_at
        return _seal(keys, _IDENTITY, json.dumps(record, separators=(",", ":")).encode())

    def open_identity(self, keys: TokenKeys, value: bytes | None) -> Sealed | None:
        plaintext = _open(keys, _IDENTITY, value)
        return None if plaintext is None else _identity_record(plaintext)

    def seal_until(self, keys: TokenKeys, kind: str, until: float) -> bytes:
        """A time (a rejection's or a throttle's end), sealed so that nobody without the token (or, for the
        throttle, the secret) can make an instance refuse a token or stop calling Kaizala."""
        return _seal(keys, kind.encode(), repr(float(until)).encode())

    def open_until(self, keys: TokenKeys, kind: str, value: bytes | None) -> float | None:
        plaintext = _open(keys, kind.encode(), value)
        if plaintext is None:
            return None
        try:
            until = float(plaintext)
        except ValueError:
            return None
        return until if math.isfinite(until) else None


def padded(plaintext: bytes) -> bytes:
    """`plaintext` with trailing spaces (which JSON and float() ignore) up to the next of a few fixed sizes, so a
    value's length tells a Redis reader only which size its content fits: an identity and a rejection look alike,
    and the length of a name, a phone number or a picture URL is not readable."""
    size = next((size for size in PADDED_SIZES if len(plaintext) <= size), None)
    if size is None:  # larger than any identity Kaizala or Entra sends: a multiple of the largest size
        size = -(-len(plaintext) // PADDED_SIZES[-1]) * PADDED_SIZES[-1]
    return plaintext.ljust(size, b" ")


def _seal(keys: TokenKeys, kind: bytes, plaintext: bytes) -> bytes:
    plaintext = padded(plaintext)
    nonce = os.urandom(_NONCE_BYTES)
    header = bytes([VERSION])
    return header + nonce + AESGCM(keys.aead_key).encrypt(nonce, plaintext, _aad(header, kind, keys.name))


def _open(keys: TokenKeys, kind: bytes, value: bytes | None) -> bytes | None:
    if not value or len(value) < 1 + _NONCE_BYTES + _TAG_BYTES or value[0] != VERSION:
        return None
    header, nonce, ciphertext = value[:1], value[1 : 1 + _NONCE_BYTES], value[1 + _NONCE_BYTES :]
    try:
        return AESGCM(keys.aead_key).decrypt(nonce, ciphertext, _aad(header, kind, keys.name))
    except InvalidTag:
        return None


def _hkdf(material: bytes, salt: bytes, label: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=label).derive(material)


def _aad(header: bytes, kind: bytes, name: str) -> bytes:
    # The kind keeps a sealed rejection from being replayed as an identity under the same name, and back.
    return header + kind + b"\x00" + name.encode()


def _identity_record(plaintext: bytes) -> Sealed | None:
    """Only our own seal produces a plaintext that authenticates, yet a shape check costs nothing and keeps a
    future format change from turning into an exception on the request path."""
    try:
        record = json.loads(plaintext)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    user_id, expires_at = record.get("id"), record.get("expires_at")
    provider = _PROVIDERS.get(record.get("provider"))
    if not isinstance(user_id, str) or not user_id or provider is None:
        return None
    texts: dict[str, str | None] = {}
    for field in _TEXT_FIELDS:
        text = record.get(field)
        if text is not None and not isinstance(text, str):
            return None
        texts[field] = text
    if not isinstance(expires_at, int | float) or isinstance(expires_at, bool) or not math.isfinite(expires_at):
        return None
    identity = Identity(
        id=user_id,
        name=texts["name"],
        phone_number=texts["phone_number"],
        picture_url=texts["picture_url"],
        action_package_id=texts["action_package_id"],
        provider=provider,
        tenant_id=texts["tenant_id"],
        user_principal_name=texts["user_principal_name"],
        client_app_id=texts["client_app_id"],
        audience=texts["audience"],
    )
    return Sealed(identity=identity, expires_at=float(expires_at))
