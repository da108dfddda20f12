"""The two tiers together: instances (an IdentityCache and its FleetCache each) sharing one real redis-redis_db and one
real upstream on 127.0.0.1. One Kaizala call per token for the fleet, shared rejections and throttle, bounded
staleness, purges, refresh-ahead once for the fleet, and Redis failing without failing a request.
"""

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

import ValidateToken
from devserver.launch import ROOT
from shared.authenticator import root
from shared.errors import IdentityUnavailable, InvalidToken
from tests.fleet_instances import Instance, all_at_once
from tests.helpers import CARD_ID, Reply, identity_payload, json_of, make_jwt, request, upstream_server, wait_for
from tests.redis_server import SECRET, RedisServer, require_redis

require_redis()

pytestmark = [pytest.mark.redis]

USERS = {"user-1": "Name of user-1"}


@pytest.fixture
def fleet_of(redis_db: RedisServer) -> Iterator[Callable[..., list[Instance]]]:
    redis_db.client().flushall()
    made: list[Instance] = []

    def make(count: int, upstream_url: str, redis: RedisServer | None = None, **options: float) -> list[Instance]:
        instances = [Instance((redis or redis_db).url, upstream_url, **options) for _ in range(count)]
        made.extend(instances)
        return instances

    yield make
    for instance in made:
        instance.fleet.close()


def test_concurrent_first_requests_on_four_instances_make_one_kaizala_call(fleet_of) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.3)) as up:
        instances = fleet_of(4, up.url)
        assert all_at_once(instances, make_jwt(), 64) == {"user-1"}
        assert up.count == 1


def test_an_identity_one_instance_fetched_is_a_fleet_hit_on_another(fleet_of) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        first, second = fleet_of(2, up.url)
        token = make_jwt()
        assert first.get(token)[1] == "miss"
        assert second.get(token)[1] == "fleet"
        assert second.get(token)[1] == "hit"  # and now from its own memory
        assert up.count == 1


def test_a_rejection_costs_the_fleet_one_kaizala_call(fleet_of) -> None:
    with upstream_server(lambda _n, _t: Reply(401)) as up:
        instances = fleet_of(3, up.url)
        token = make_jwt()
        for instance in instances:
            with pytest.raises(InvalidToken):
                instance.get(token)
        assert up.count == 1


def test_a_429_stops_every_instances_misses_while_hits_keep_answering(fleet_of) -> None:
    cached, throttled = make_jwt(), make_jwt()
    with upstream_server(
        lambda _n, t: Reply(429, headers={"Retry-After": "3"}) if t == throttled else Reply(body=identity_payload())
    ) as up:
        first, second = fleet_of(2, up.url)
        assert second.get(cached)[1] == "miss"
        with pytest.raises(IdentityUnavailable):
            first.get(throttled)
        calls = up.count
        with pytest.raises(IdentityUnavailable) as refused:
            second.get(make_jwt())  # another instance, another token: not sent
        assert 1 <= refused.value.retry_after <= 3
        assert second.get(cached)[1] == "hit"
        assert up.count == calls


def test_a_value_tampered_with_in_redis_is_checked_with_kaizala_again_never_accepted(fleet_of, redis_db) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        first, second = fleet_of(2, up.url)
        token = make_jwt()
        first.get(token)
        client = redis_db.client()
        for key in client.scan_iter(count=1000):
            if client.type(key) == b"string":
                value = bytearray(client.get(key) or b"")
                value[-1] ^= 1
                client.set(key, bytes(value), keepttl=True)
        identity, source = second.get(token)
        assert (identity.id, source) == ("user-1", "miss")
        assert up.count == 2


def test_local_copies_live_at_most_local_seconds_then_read_the_fleet_again(fleet_of, redis_db) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        (instance,) = fleet_of(1, up.url, local_seconds=1)
        token = make_jwt()
        assert instance.get(token)[1] == "miss"
        assert instance.get(token)[1] == "hit"
        time.sleep(1.1)
        assert instance.get(token)[1] == "fleet"  # its local copy expired; Redis still had it
        redis_db.client().flushall()  # the fleet's entry is gone (a purge this instance missed, say)
        assert instance.get(token)[1] == "hit"  # stale for at most local_seconds...
        time.sleep(1.1)
        assert instance.get(token)[1] == "miss"  # ...then checked with Kaizala again
        assert up.count == 2


def test_a_purge_reaches_every_instance_within_a_second(fleet_of, redis_db) -> None:
    with upstream_server(lambda _n, t: Reply(body=identity_payload("user-p" if t == purged else "user-k"))) as up:
        purged, kept = make_jwt(), make_jwt()
        instances = fleet_of(3, up.url)
        for instance in instances:
            instance.get(purged)
            instance.get(kept)
        assert wait_for(lambda: all(i.fleet.subscribed.is_set() for i in instances), 5)
        calls = up.count
        env = {"TOKEN_CACHE_REDIS_URL": redis_db.url, "TOKEN_CACHE_REDIS_SECRET": SECRET.decode(), "PATH": ""}
        command = [sys.executable, "-m", "shared.purge", "--user", "user-p"]
        done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, timeout=30)
        purged_at = time.monotonic()
        assert done.returncode == 0, done.stderr
        # Every instance forgets the user's local copy (each held two identities) within a second.
        assert wait_for(lambda: all(i.cache.counts()["identities"] == 1 for i in instances), 1.0)
        assert time.monotonic() - purged_at < 1.0
        assert instances[0].get(purged)[1] == "miss"  # Redis forgot it too: checked with Kaizala again
        for instance in instances:
            assert instance.get(kept)[1] == "hit"  # another user's entries stay
        for instance in instances[1:]:
            assert instance.get(purged)[1] == "fleet"  # forgotten locally; the fresh check is shared
        assert up.count == calls + 1


def test_refresh_ahead_refreshes_an_entry_once_for_the_fleet(fleet_of) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.2)) as up:
        instances = fleet_of(4, up.url)
        token = make_jwt()
        for instance in instances:
            instance.get(token, seconds=2, refresh_ahead=True)
        assert up.count == 1
        time.sleep(1.7)  # every copy is in the last 20% of its life
        for instance in instances:
            assert instance.get(token, seconds=2, refresh_ahead=True)[1] == "hit"
        assert wait_for(lambda: all(i.cache.admission.busy == 0 for i in instances), 3)
        assert up.count == 2
        time.sleep(0.5)  # past the first entry's life: the refreshed one serves every instance
        for instance in instances:
            assert instance.get(token, seconds=2, refresh_ahead=True)[1] in ("hit", "fleet")
        assert up.count == 2


def test_redis_killed_then_restarted_never_fails_a_request_and_sharing_resumes(fleet_of, own_redis) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        first, second = fleet_of(2, up.url, redis=own_redis)
        cached = make_jwt()
        first.get(cached)
        own_redis.kill()
        for _ in range(20):  # Redis down: each instance answers from its memory or from Kaizala
            started = time.monotonic()
            assert first.get(cached)[0].id == "user-1"
            assert second.get(make_jwt())[0].id == "user-1"
            assert time.monotonic() - started < 1.0
        own_redis.start()
        token = make_jwt()
        assert wait_for(lambda: first.get(make_jwt()) is not None and first.fleet.breaker.allow(), 3)
        time.sleep(0.6)  # the breaker's open period: the next call probes and finds Redis back
        first.get(token)
        assert wait_for(lambda: second.get(token)[1] in ("fleet", "hit"), 3)  # shared again


def test_redis_paused_costs_a_request_at_most_its_timeout(fleet_of, own_redis) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        (instance,) = fleet_of(1, up.url, redis=own_redis)
        own_redis.pause(2)
        for _ in range(5):
            started = time.monotonic()
            assert instance.get(make_jwt())[0].id == "user-1"
            assert time.monotonic() - started < 1.0  # 100 ms per Redis operation, then skipped
        assert up.count == 5


# --- through the functions, with the app settings ----------------------------------------------------------------


@pytest.fixture
def with_redis(monkeypatch, redis_db: RedisServer) -> RedisServer:
    redis_db.client().flushall()
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", redis_db.url)
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", SECRET.decode())
    yield redis_db
    monkeypatch.delenv("TOKEN_CACHE_REDIS_URL")
    ValidateToken.main(request())  # the next request closes this test's Redis connection


def test_validate_token_with_redis_on_and_redis_reveals_nothing(monkeypatch, with_redis) -> None:
    phone = "+15550001234"
    with upstream_server(lambda _n, _t: Reply(body={**identity_payload("c0ffee-user"), "phoneNumber": phone})) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        tokens = [make_jwt() for _ in range(5)]
        for token in tokens:
            assert json_of(ValidateToken.main(request(token=token)))["id"] == "c0ffee-user"
        root().clear()  # forget locally: the next answers come from Redis
        for token in tokens:
            assert json_of(ValidateToken.main(request(token=token)))["id"] == "c0ffee-user"
        assert up.count == 5
    dump = with_redis.dump()
    assert dump
    everything = b" ".join([*dump, *(value for values in dump.values() for value in values)])
    for needle in [*tokens, "c0ffee-user", "Name of c0ffee-user", phone, CARD_ID, "pictures.example"]:
        assert needle.encode() not in everything


def test_a_blocked_user_is_refused_even_when_cached(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload("user-b"))) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        token = make_jwt()
        assert ValidateToken.main(request(token=token)).status_code == 200
        monkeypatch.setenv("KAIZALA_BLOCKED_USER_IDS", "someone, user-b")
        response = ValidateToken.main(request(token=token))
        assert (response.status_code, json_of(response)["error"]) == (403, "forbidden")
        monkeypatch.setenv("KAIZALA_ALLOWED_USER_IDS", "user-b")  # blocked wins over allowed
        assert ValidateToken.main(request(token=token)).status_code == 403
        assert up.count == 1


def test_with_caching_off_the_fleets_lease_is_still_given_back(fleet_of) -> None:
    """Before: with nothing to store, the leader kept its lease, and the next request for the token on any
    instance waited for it until its deadline."""
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        first, second = fleet_of(2, up.url)
        token = make_jwt()
        assert first.get(token, seconds=0)[1] == "miss"
        started = time.monotonic()
        assert second.get(token, seconds=0)[1] == "miss"
        assert time.monotonic() - started < 0.5
        assert up.count == 2


def test_a_lease_written_without_expiry_makes_nobody_wait(fleet_of, redis_db) -> None:
    """Someone with write access to Redis cannot block a token: a lease that no instance wrote is ignored."""
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        (instance,) = fleet_of(1, up.url)
        token = make_jwt()
        instance.get(token)  # its keys now exist; the lease key is the entry key with another kind
        client = redis_db.client()
        (entry_key,) = [key for key in client.scan_iter(count=1000) if b":e:" in key]
        client.set(entry_key.replace(b":e:", b":l:"), b"someone else")  # no expiry
        client.delete(entry_key)
        fresh = Instance(redis_db.url, up.url)
        try:
            started = time.monotonic()
            assert fresh.get(token)[0].id == "user-1"
            assert time.monotonic() - started < 0.5
        finally:
            fresh.fleet.close()


def test_a_forged_lease_delays_a_miss_by_about_one_call_not_its_deadline(fleet_of, redis_db) -> None:
    """A Redis writer keeps a forged lease (with an expiry an instance could have written) on a token: a waiter
    gives up on it after about one upstream call and asks Kaizala itself. Before: 503 at the deadline (2 s)."""
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.1)) as up:
        (instance,) = fleet_of(1, up.url)
        token = make_jwt()
        instance.get(token)  # the instance has now seen calls take ~0.1 s; the token's keys exist
        client = redis_db.client()
        (entry_key,) = [key for key in client.scan_iter(count=1000) if b":e:" in key]
        instance.cache.clear()
        client.delete(entry_key)
        client.set(entry_key.replace(b":e:", b":l:"), b"someone else", px=50_000)
        calls = up.count
        started = time.monotonic()
        identity, source = instance.get(token)
        waited = time.monotonic() - started
    assert identity.id == "user-1"
    assert source == "miss"
    assert up.count == calls + 1  # it asked Kaizala itself
    assert waited < 0.8  # 2 x the observed call (at least 0.25 s), plus its own call: not the 2 s deadline


def test_while_redis_is_skipped_an_expired_local_copy_serves_and_waits_for_the_fleet(fleet_of, own_redis) -> None:
    """As without Redis: a cached user is answered at once, and not re-checked by each instance on its own (after
    a failover that would be every user times every instance); once Redis answers, the copy past
    TOKEN_CACHE_LOCAL_SECONDS goes back to the fleet, where a purge it missed is honoured."""
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.3)) as up:
        (instance,) = fleet_of(1, up.url, redis=own_redis, local_seconds=1)
        token = make_jwt()
        instance.get(token)
        own_redis.kill()
        for _ in range(4):  # Redis fails a few times: the breaker opens
            instance.get(make_jwt())
        assert instance.fleet.breaker.is_open
        calls = up.count
        time.sleep(1.1)  # the cached user's local copy is past its local life
        started = time.monotonic()
        identity, source = instance.get(token)
        assert (identity.id, source) == ("user-1", "hit")
        assert time.monotonic() - started < 0.3  # not the 0.3 s Kaizala call
        time.sleep(0.5)
        assert up.count == calls  # no call of its own while Redis is away
        own_redis.start()  # empty: the fleet knows nothing
        assert wait_for(lambda: not instance.fleet.skipped or instance.get(make_jwt()) is None, 3)
        assert wait_for(lambda: instance.get(token)[1] == "miss", 3)  # back to the fleet, then to Kaizala
