"""What someone with access to the fleet's Redis can do, and not: a writer cannot make a purge fail (junk in a purge
index is skipped, the rest purged, the purge published); an operator's id matches however it is cased or spaced,
in purges and in the blocklist alike; a reader learns from a value's length only which of a few sizes it fits, and
from its expiry the token's `exp` only to the minute."""

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests_mock

import ValidateToken
from devserver.launch import ROOT
from shared.fleet import FleetCache
from shared.fleet.sealing import PADDED_SIZES, Sealer
from shared.identity import Identity
from tests.conftest import MOCK_URL
from tests.helpers import identity_payload, json_of, make_jwt, request, wait_for
from tests.redis_server import SECRET, RedisServer, require_redis

require_redis()

pytestmark = [pytest.mark.redis]

NAMESPACE = Sealer(SECRET).namespace
HEADER_BYTES = 1 + 12 + 16  # version, nonce, GCM tag


def someone(user_id: str = "MixedCase-User-7", name: str = "N", picture: str = "https://p.example/a.png") -> Identity:
    return Identity(id=user_id, name=name, phone_number="+15550001", picture_url=picture, action_package_id="card")


@pytest.fixture
def fleet(redis_db: RedisServer) -> Iterator[FleetCache]:
    redis_db.client().flushall()
    made = FleetCache(redis_db.url, SECRET, timeout_ms=500)
    yield made
    made.close()


def purge(redis_db: RedisServer, user_id: str) -> subprocess.CompletedProcess[str]:
    env = {"TOKEN_CACHE_REDIS_URL": redis_db.url, "TOKEN_CACHE_REDIS_SECRET": SECRET.decode(), "PATH": ""}
    command = [sys.executable, "-m", "shared.purge", "--user", user_id]
    return subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def index_key_of(fleet: FleetCache, user_id: str) -> str:
    return f"{NAMESPACE}:u:{{{fleet.user_tag(user_id)}}}"


def test_junk_in_a_purge_index_is_skipped_and_the_rest_purged_and_published(
    fleet: FleetCache, redis_db: RedisServer
) -> None:
    heard: list[str | None] = []
    fleet.subscribe(heard.append)
    assert fleet.subscribed.wait(10)
    tokens = [make_jwt() for _ in range(3)]
    for token in tokens:
        fleet.store(token, someone(), time.time() + 600)
    index = index_key_of(fleet, "MixedCase-User-7")
    redis_db.client().sadd(index, b"\xff\xfe not utf-8", b"../../etc", b"a" * 40 + b"!", "0" * 40)
    done = purge(redis_db, "MixedCase-User-7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("purged 3 shared identities")  # the writer's members deleted nothing
    assert all(fleet.lookup(token).entry is None for token in tokens)
    assert wait_for(lambda: fleet.user_tag("MixedCase-User-7") in heard, 2.0)


def test_a_purge_index_of_the_wrong_type_still_purges_and_publishes(fleet: FleetCache, redis_db: RedisServer) -> None:
    heard: list[str | None] = []
    fleet.subscribe(heard.append)
    assert fleet.subscribed.wait(10)
    index = index_key_of(fleet, "MixedCase-User-7")
    redis_db.client().set(index, "a string where a set belongs")
    done = purge(redis_db, "MixedCase-User-7")
    assert done.returncode == 0, done.stderr
    assert not redis_db.client().exists(index)
    assert wait_for(lambda: fleet.user_tag("MixedCase-User-7") in heard, 2.0)


@pytest.mark.parametrize("as_pasted", ["MIXEDCASE-USER-7", " mixedcase-user-7 ", "MixedCase-User-7"])
def test_a_purge_matches_the_id_however_it_is_cased_or_spaced(
    fleet: FleetCache, redis_db: RedisServer, as_pasted: str
) -> None:
    token = make_jwt()
    fleet.store(token, someone(), time.time() + 600)
    done = purge(redis_db, as_pasted)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("purged 1 shared identities")
    assert fleet.lookup(token).entry is None


@pytest.mark.parametrize("as_pasted", ["MIXEDCASE-USER-7", " mixedcase-user-7", "MixedCase-User-7"])
def test_the_blocklist_matches_the_id_as_purges_do(monkeypatch: pytest.MonkeyPatch, as_pasted: str) -> None:
    """Before: an operator who pasted the id in capitals got "purged" from the purge, and the user kept getting
    200 because the blocklist compared ids exactly."""
    monkeypatch.setenv("KAIZALA_BLOCKED_USER_IDS", f"someone-else,{as_pasted}")
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload("MixedCase-User-7"))
        response = ValidateToken.main(request(token=make_jwt()))
    assert response.status_code == 403
    assert json_of(response)["error"] == "forbidden"


def sealed_size(redis_db: RedisServer, pattern: str) -> int:
    client = redis_db.client()
    (key,) = list(client.scan_iter(match=pattern))
    return len(client.get(key) or b"") - HEADER_BYTES


def test_values_come_in_a_few_sizes_whatever_they_hold(fleet: FleetCache, redis_db: RedisServer) -> None:
    sizes = []
    for name, picture in [("Al", "https://p.example/1.png"), ("Bartholomew " * 8, "https://p.example/" + "x" * 90)]:
        redis_db.client().flushall()
        fleet.store(make_jwt(), someone(name=name, picture=picture), time.time() + 600)
        sizes.append(sealed_size(redis_db, f"{NAMESPACE}:e:*"))
    redis_db.client().flushall()
    fleet.store_rejection(make_jwt(), time.time() + 30)
    rejection = sealed_size(redis_db, f"{NAMESPACE}:e:*")
    fleet.throttle(time.time() + 30)
    throttle = sealed_size(redis_db, f"{NAMESPACE}:throttle")
    # A short identity, a long one, a rejection and the throttle: the length tells none of them apart.
    assert [*sizes, rejection, throttle] == [PADDED_SIZES[0]] * 4
    fleet.store(make_jwt(), someone(name="N" * 600), time.time() + 600)  # beyond the first size: the next one
    assert PADDED_SIZES[1] in {len(v[0]) - HEADER_BYTES for v in redis_db.dump().values()}


def test_a_shared_identity_leaves_redis_on_a_whole_minute_before_the_token_expires(
    fleet: FleetCache, redis_db: RedisServer
) -> None:
    exp = time.time() + 1200.5
    token = make_jwt()
    fleet.store(token, someone(), exp)
    client = redis_db.client()
    (key,) = list(client.scan_iter(match=f"{NAMESPACE}:e:*"))
    expires_ms = client.execute_command("PEXPIRETIME", key)
    # Rounded down (the entry never outlives the token), give or take the milliseconds the SET took.
    assert 0 <= expires_ms - int(exp // 60 * 60 * 1000) < 250
    state = fleet.lookup(token)
    assert state.entry is not None
    assert state.entry.expires_at == exp


def test_an_identity_is_never_shared_unless_its_purge_index_lists_it(redis_db: RedisServer) -> None:
    """Before: the entry was written in the same pipeline as the index, so a denied SADD (or the index's shard
    failing) left an entry no purge could find."""
    redis_db.client().flushall()
    redis_db.add_user("no-sadd", "no-sadd-password", ["~*", "&*", "+@all", "-sadd"])
    fleet = FleetCache(f"redis://no-sadd:no-sadd-password@127.0.0.1:{redis_db.port}/0", SECRET, timeout_ms=500)
    try:
        token = make_jwt()
        fleet.store(token, someone(), time.time() + 600)
        assert fleet.lookup(token).entry is None
        assert not list(redis_db.client().scan_iter(match=f"{NAMESPACE}:e:*"))
    finally:
        fleet.close()


def test_a_throttle_key_of_the_wrong_type_stops_no_single_flight(fleet: FleetCache, redis_db: RedisServer) -> None:
    redis_db.client().rpush(f"{NAMESPACE}:throttle", "a writer's list")
    token = make_jwt()
    taken, state = fleet.try_lead(token, 5.0)
    assert taken
    assert state.throttled_until is None
    other = FleetCache(redis_db.url, SECRET, timeout_ms=500)
    try:
        assert other.try_lead(token, 5.0)[0] is False  # the lease still holds for the fleet
        assert not other.skipped
    finally:
        other.close()
