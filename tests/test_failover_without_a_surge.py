"""A Redis failover (patching restarts it; its memory may be lost) must not become the Kaizala surge the fleet
cache exists to prevent: sharing resumes within about a second, instances do not all forget their copies at once,
so the fleet asks Kaizala about each active user at most once, and a purge missed meanwhile is still honoured
within TOKEN_CACHE_LOCAL_SECONDS."""

import threading
import time
from collections.abc import Iterator

import pytest

from shared.fleet.cache import OPEN_SECONDS
from tests.fleet_instances import Instance
from tests.helpers import Reply, identity_payload, make_jwt, upstream_server, wait_for
from tests.redis_server import RedisServer, require_redis

require_redis()

pytestmark = [pytest.mark.redis]

USERS, INSTANCES, LOCAL_SECONDS = 12, 3, 2.0


class Traffic:
    """Every instance asks about every user, over and over, from a thread each, as their requests would."""

    def __init__(self, instances: list[Instance], tokens: list[str]) -> None:
        self.instances, self.tokens = instances, tokens
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in instances]

    def _run(self, instance: Instance) -> None:
        while not self._stop.is_set():
            for token in self.tokens:
                try:
                    instance.get(token)
                except Exception as error:
                    self.errors.append(error)
            self._stop.wait(0.05)

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


@pytest.fixture
def instances(own_redis: RedisServer) -> Iterator[tuple[list[Instance], list[str], object]]:
    with upstream_server(lambda _n, t: Reply(body=identity_payload(f"user-{t[-6:]}"), delay=0.1)) as up:
        made = [
            Instance(own_redis.url, up.url, local_seconds=LOCAL_SECONDS, open_seconds=None)  # the app's default
            for _ in range(INSTANCES)
        ]
        tokens = [make_jwt() for _ in range(USERS)]
        for instance in made:
            for token in tokens:
                instance.get(token)
        assert up.count == USERS  # warm: one call per user for the whole fleet
        try:
            yield made, tokens, up
        finally:
            for instance in made:
                instance.fleet.close()


def test_after_a_restart_that_loses_redis_memory_each_user_costs_kaizala_at_most_one_call(
    instances: tuple[list[Instance], list[str], object], own_redis: RedisServer
) -> None:
    made, tokens, up = instances
    with Traffic(made, tokens) as traffic:
        time.sleep(0.3)
        own_redis.kill()
        time.sleep(1.0)  # down long enough for every breaker to open
        before = up.count  # type: ignore[attr-defined]
        own_redis.start()  # empty: every shared identity is gone
        time.sleep(3 * LOCAL_SECONDS + 2 * OPEN_SECONDS)  # every local copy has gone back to the fleet by now
        calls = up.count - before  # type: ignore[attr-defined]
    assert not traffic.errors
    # Before: every instance forgot everything when its subscription came back, and asked Kaizala for each of its
    # users while its breaker was still open: up to USERS x INSTANCES calls.
    after = up.calls[before:]  # type: ignore[attr-defined]
    twice = {tokens.index(t) for t in after if after.count(t) > 1}  # type: ignore[arg-type]
    assert calls <= USERS, f"{calls} Kaizala calls for {USERS} users on {INSTANCES} instances; twice: {twice}"


def test_sharing_resumes_within_about_a_second_of_redis_answering_again(
    instances: tuple[list[Instance], list[str], object], own_redis: RedisServer
) -> None:
    made, _tokens, _up = instances
    own_redis.kill()
    for instance in made:
        for _ in range(4):
            instance.get(make_jwt())  # a request each: Redis fails, the breakers open
    assert all(instance.fleet.breaker.is_open for instance in made)
    own_redis.start()
    back = time.monotonic()
    token = make_jwt()

    def shared() -> bool:
        made[0].cache.clear()
        made[1].cache.clear()
        made[0].get(token)
        return made[1].get(token)[1] == "fleet"

    assert wait_for(shared, 5.0)
    assert time.monotonic() - back < OPEN_SECONDS + 0.5


def test_a_purge_an_instance_did_not_hear_is_honoured_within_its_local_seconds(
    instances: tuple[list[Instance], list[str], object], own_redis: RedisServer
) -> None:
    made, tokens, up = instances
    deaf = made[0]
    deaf.fleet._purges.close()  # this instance no longer hears purges (as after a lost subscription)
    user = deaf.get(tokens[0])[0].id
    assert made[1].fleet.purge_user(user) == 1
    calls = up.count  # type: ignore[attr-defined]
    started = time.monotonic()
    assert wait_for(lambda: deaf.get(tokens[0])[1] == "miss", LOCAL_SECONDS + 1.0)
    assert time.monotonic() - started <= LOCAL_SECONDS + 1.0
    assert up.count == calls + 1  # type: ignore[attr-defined]


def test_an_instance_answering_only_from_memory_still_asks_redis_again_and_honours_a_missed_purge(
    instances: tuple[list[Instance], list[str], object], own_redis: RedisServer
) -> None:
    """Before: with every request a hit, nothing probed Redis, so the instance stayed 'skipped' and served a
    purged user's copy for up to TOKEN_CACHE_SECONDS after Redis came back."""
    made, tokens, up = instances
    deaf, other = made[0], made[1]
    deaf.fleet._purges.close()  # it will not hear the purge
    own_redis.kill()
    for _ in range(4):
        deaf.get(make_jwt())  # misses fail on Redis: its breaker opens
    assert deaf.fleet.breaker.is_open
    own_redis.start()
    identity = deaf.get(tokens[0])[0]

    def stored_then_purged() -> bool:  # by an instance that reaches the empty Redis (once its connections have)
        other.fleet.store(tokens[0], identity, time.time() + 300)
        return other.fleet.purge_user(identity.id) == 1

    assert wait_for(stored_then_purged, 5.0)
    calls = up.count  # type: ignore[attr-defined]
    # Only hits from here on: the copy past its local life, once a probe is due, goes back to Redis.
    assert wait_for(lambda: deaf.get(tokens[0])[1] == "miss", OPEN_SECONDS + LOCAL_SECONDS + 2.0)
    assert up.count == calls + 1  # type: ignore[attr-defined]
