"""Sealing: what the fleet cache writes to Redis derives from the token and the deployment secret, and anything
that does not open is None (a miss), never an exception and never an identity."""

import hashlib
import os
import time

from hypothesis import given
from hypothesis import strategies as st

from shared.fleet.sealing import VERSION, Sealer, TokenKeys
from shared.identity import Identity
from tests.helpers import make_jwt, secret
from tests.redis_server import OTHER_SECRET, SECRET

SEALER = Sealer(SECRET)


def identity(user_id: str = "a1b2c3d4-0001-4000-8000-000000000001") -> Identity:
    return Identity(
        id=user_id,
        name="Asha Rao",
        phone_number=secret("+15550100001"),
        picture_url="https://pictures.example/asha.png",
        action_package_id="com.contoso.productpicker",
    )


def test_round_trip_and_expiry_travel_together() -> None:
    token = make_jwt()
    keys = SEALER.keys(token)
    expires_at = time.time() + 60
    opened = SEALER.open_identity(keys, SEALER.seal_identity(keys, identity(), expires_at))
    assert opened is not None
    assert opened.identity == identity()
    assert opened.expires_at == expires_at


def test_a_teams_identity_round_trips_with_its_provider_and_reveals_nothing() -> None:
    token = make_jwt()
    keys = SEALER.keys(token)
    teams_user = Identity.from_teams(
        "3f2b8c1a-7d4e-4b6f-9a0c-1e5d2f8b7c6a",
        name="Asha Rao",
        tenant_id="8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70",
        user_principal_name="asha@contoso.example",
        client_app_id="1fec8e78-bce4-4aaf-ab1b-5451cc387264",
        audience="api://contoso.example/6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d",
    )
    value = SEALER.seal_identity(keys, teams_user, time.time() + 60)
    opened = SEALER.open_identity(keys, value)
    assert opened is not None
    assert opened.identity == teams_user
    assert opened.identity.provider == "teams"
    for revealing in (teams_user.id, "Asha", "8f3a1c2e", "asha@contoso", "teams", "1fec8e78", "contoso.example"):
        assert revealing.encode() not in value


def test_names_are_one_way_distinct_and_not_the_in_process_key() -> None:
    token = make_jwt()
    keys = SEALER.keys(token)
    plain_hash = hashlib.sha256(token.encode()).hexdigest()  # the in-process cache's key
    assert token not in keys.name
    assert keys.name not in plain_hash
    assert plain_hash not in keys.name
    assert keys.aead_key.hex() not in keys.name
    assert keys.name != SEALER.keys(make_jwt()).name
    assert keys == SEALER.keys(token)  # every instance derives the same name
    assert Sealer(OTHER_SECRET).keys(token).name != keys.name
    assert Sealer(OTHER_SECRET).namespace != SEALER.namespace


def test_every_bit_flip_is_a_miss() -> None:
    keys = SEALER.keys(make_jwt())
    value = SEALER.seal_identity(keys, identity(), time.time() + 60)
    for position in range(len(value)):
        for bit in (0, 7):
            flipped = bytearray(value)
            flipped[position] ^= 1 << bit
            assert SEALER.open_identity(keys, bytes(flipped)) is None, (position, bit)


def test_truncated_empty_and_junk_values_are_misses() -> None:
    keys = SEALER.keys(make_jwt())
    value = SEALER.seal_identity(keys, identity(), time.time() + 60)
    for junk in (None, b"", value[:1], value[:13], value[:-1], value + b"\x00", os.urandom(len(value))):
        assert SEALER.open_identity(keys, junk) is None


def test_another_version_is_a_miss() -> None:
    keys = SEALER.keys(make_jwt())
    value = SEALER.seal_identity(keys, identity(), time.time() + 60)
    assert value[0] == VERSION
    for version in (0, VERSION + 1, 255):
        assert SEALER.open_identity(keys, bytes([version]) + value[1:]) is None


def test_another_deployment_token_or_kind_cannot_open_it() -> None:
    token = make_jwt()
    keys = SEALER.keys(token)
    value = SEALER.seal_identity(keys, identity(), time.time() + 60)
    other_deployment = Sealer(OTHER_SECRET)
    assert other_deployment.open_identity(other_deployment.keys(token), value) is None
    # The same value moved under another token's name does not open there either (AAD binds the name).
    assert SEALER.open_identity(SEALER.keys(make_jwt()), value) is None
    moved = TokenKeys(name=SEALER.keys(make_jwt()).name, aead_key=keys.aead_key)
    assert SEALER.open_identity(moved, value) is None
    # A sealed rejection is not an identity, and back.
    assert SEALER.open_identity(keys, SEALER.seal_until(keys, "rejected", time.time() + 30)) is None
    assert SEALER.open_until(keys, "rejected", value) is None
    assert SEALER.open_until(keys, "throttle", SEALER.seal_until(keys, "rejected", time.time() + 30)) is None


def test_a_writer_without_the_secret_cannot_forge_an_identity_for_a_made_up_token() -> None:
    """The attack the secret stops: make up a JWT-shaped token, seal any identity under keys derived from the token
    alone (no secret, or a guessed one), write it, present the token."""
    token = make_jwt()
    real = SEALER.keys(token)
    for guess in (b"", b"\x00" * 32, OTHER_SECRET):
        forger = Sealer(guess or b"x")
        forged_keys = TokenKeys(name=real.name, aead_key=forger.keys(token).aead_key)
        forged = forger.seal_identity(forged_keys, identity("someone-else"), time.time() + 600)
        assert SEALER.open_identity(real, forged) is None


def test_user_tags_are_keyed_and_reveal_no_user_id() -> None:
    user_id = "a1b2c3d4-0001-4000-8000-000000000001"
    tag = SEALER.user_tag(user_id)
    assert tag == SEALER.user_tag(user_id)
    assert tag != SEALER.user_tag("a1b2c3d4-0001-4000-8000-000000000002")
    assert tag != Sealer(OTHER_SECRET).user_tag(user_id)
    # Not a plain hash a reader could confirm a guessed id against.
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5, hashlib.blake2b):
        assert tag[:16] not in digest(user_id.encode()).hexdigest()
    assert user_id not in tag


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_open_and_never_raise(value: bytes) -> None:
    keys = SEALER.keys("a.b.c")
    assert SEALER.open_identity(keys, value) is None
    assert SEALER.open_until(keys, "rejected", value) is None
