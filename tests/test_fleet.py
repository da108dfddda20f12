"""FleetCache against a real redis-redis_db: what it shares, what Redis holds, single flight across threads and
processes, purges through the CLI, and Redis failing (killed, restarted, paused, flushed) while calls are in flight.

Timing assertions carry wide headroom (a loaded 2-core machine): they tell "bounded by the op timeout" from "hung".
"""

import hashlib
import itertools
import logging
import multiprocessing
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from shared.fleet import NOTHING, FleetCache, SharedState
from shared.fleet.client import SINGLE, RedisClient
from shared.fleet.sealing import VERSION, Sealer
from shared.identity import Identity
from shared.settings import FleetSettings
from tests.helpers import make_jwt, secret, wait_for
from tests.redis_server import OTHER_SECRET, SECRET, RedisServer, require_redis

require_redis()

pytestmark = [pytest.mark.redis]

TIMEOUT_MS = 100
CALL_BOUND = 1.0  # a call's worst case under failure: 100 ms timeout, plus a loaded machine's scheduling
OPEN_SECONDS = 0.5


@pytest.fixture
def make_fleet(redis_db: RedisServer) -> Iterator[Callable[..., FleetCache]]:
    redis_db.client().flushall()
    made: list[FleetCache] = []

    def make(url: str | None = None, secret_: bytes = SECRET, **options: Any) -> FleetCache:
        options.setdefault("timeout_ms", TIMEOUT_MS)
        options.setdefault("open_seconds", OPEN_SECONDS)
        fleet = FleetCache(url or redis_db.url, secret_, **options)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


def person(n: int, card: str = "com.contoso.productpicker") -> Identity:
    return Identity(
        id=f"c0ffee00-{n:04d}-4000-8000-{n:012d}",
        name=f"Person Number{n}",
        phone_number=secret(f"+1555987{n:04d}"),
        picture_url=f"https://pictures.example/p{n}.png",
        action_package_id=card,
    )


def soon(seconds: float = 600) -> float:
    return time.time() + seconds


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kaizala_auth" and r.levelno == logging.WARNING]


def assert_one_warning_per_change(caplog: pytest.LogCaptureFixture, port: int) -> None:
    """Skipped, then back: one WARNING per change of state, never one per call. A loaded machine may add a short
    extra skip (a 100 ms timeout missed); the verdict is that warnings alternate and end with Redis back."""
    states = ["back" if "answers again" in w else "skipped" for w in warnings_of(caplog)]
    assert states[:2] == ["skipped", "back"], states
    assert states[-1] == "back", states
    assert all(a != b for a, b in itertools.pairwise(states)), states
    assert len(states) <= 6, states
    assert all(f"127.0.0.1:{port}" in w for w in warnings_of(caplog))


# --- what is shared ---------------------------------------------------------------------------------------------


def test_an_identity_stored_by_one_instance_is_found_by_another(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer
) -> None:
    one, two = make_fleet(), make_fleet()
    token = make_jwt()
    expires_at = soon(120)
    assert two.lookup(token) == NOTHING
    one.store(token, person(1), expires_at)
    state = two.lookup(token)
    assert state.entry is not None
    assert state.entry.identity == person(1)
    assert state.entry.expires_at == expires_at
    assert (state.rejected_until, state.throttled_until) == (None, None)
    # Redis forgets it no later than the entry's own end.
    (key,) = [k for k in redis_db.client().scan_iter() if b":e:" in k]
    assert 0 < redis_db.client().pttl(key) <= 120_000
    assert two.lookup(make_jwt()) == NOTHING


def test_an_already_expired_identity_is_not_stored(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer
) -> None:
    fleet = make_fleet()
    fleet.store(make_jwt(), person(1), time.time() - 1)
    assert redis_db.client().dbsize() == 0


def test_rejections_are_shared_and_bounded(make_fleet: Callable[..., FleetCache]) -> None:
    one, two = make_fleet(), make_fleet()
    token, long_token = make_jwt(), make_jwt()
    one.store_rejection(token, soon(30))
    one.store_rejection(long_token, soon(3600))
    rejected = two.lookup(token).rejected_until
    assert rejected is not None
    assert 25 < rejected - time.time() <= 30
    long_rejected = two.lookup(long_token).rejected_until
    assert long_rejected is not None
    assert long_rejected - time.time() <= 60  # nobody is refused for long on Redis's word
    assert two.lookup(make_jwt()).rejected_until is None


def test_a_rejection_drops_the_shared_identity(make_fleet: Callable[..., FleetCache]) -> None:
    one, two = make_fleet(), make_fleet()
    token = make_jwt()
    one.store(token, person(1), soon())
    assert two.lookup(token).entry is not None
    one.store_rejection(token, soon(30))  # a refresh found the token revoked
    state = two.lookup(token)
    assert state.entry is None
    assert state.rejected_until is not None


def test_a_throttle_reaches_every_instance_of_the_deployment_only(make_fleet: Callable[..., FleetCache]) -> None:
    one, two = make_fleet(), make_fleet()
    other_deployment = make_fleet(secret_=OTHER_SECRET)
    one.throttle(soon(10))
    # Read where it matters: by whoever is about to call Kaizala (taking the lease, or waiting on one).
    throttled = two.try_lead(make_jwt(), 1)[1].throttled_until
    assert throttled is not None
    assert 5 < throttled - time.time() <= 10
    assert other_deployment.try_lead(make_jwt(), 1)[1].throttled_until is None


def test_redis_holds_no_token_user_id_name_phone_or_card(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer
) -> None:
    fleet = make_fleet()
    tokens = [make_jwt() for _ in range(30)]
    people = [person(n, card=f"com.contoso.card{n % 3}") for n in range(30)]
    for token, who in zip(tokens, people, strict=True):
        fleet.store(token, who, soon())
    for token in tokens[:5]:
        assert fleet.try_lead(token, 30)[0]  # leases held at the time of the dump
    fleet.store_rejection(make_jwt(), soon(30))
    fleet.throttle(soon(10))
    dump = redis_db.dump()
    assert len(dump) >= 30 + 30 + 5 + 1  # entries, user indexes, leases, rejection (+ throttle)
    blob = b"\n".join(key + b"=" + b"|".join(values) for key, values in dump.items())
    forbidden: list[str] = []
    for token in tokens:
        forbidden += [token, *token.split("."), hashlib.sha256(token.encode()).hexdigest()]
    for who in people:
        assert who.phone_number is not None
        forbidden += [who.id, who.id.split("-")[-1], hashlib.sha256(who.id.encode()).hexdigest()]
        forbidden += [who.name or "", "Number", who.phone_number, who.phone_number[1:], "pictures.example"]
        forbidden += [who.action_package_id or "", "contoso"]
    found = [value for value in forbidden if value.encode().lower() in blob.lower()]
    assert not found, f"Redis reveals {found[:5]}"


def test_tampered_forged_and_foreign_values_are_misses(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer
) -> None:
    fleet = make_fleet()
    token = make_jwt()
    rejected = make_jwt()
    fleet.store(token, person(1), soon())
    fleet.store_rejection(rejected, soon(30))
    fleet.throttle(soon(10))
    client = redis_db.client()
    entry_key = fleet._entry_key(fleet._sealer.keys(token)).encode()
    rejection_key = fleet._entry_key(fleet._sealer.keys(rejected)).encode()  # a rejection lives in the entry's key
    throttle_key = next(k for k in client.scan_iter() if k.endswith(b":throttle"))
    good = client.get(entry_key)
    assert good is not None
    other = Sealer(OTHER_SECRET)
    forged_values = [
        bytes([good[0] ^ 1]) + good[1:],  # bit flips: version, nonce, ciphertext, tag
        good[:5] + bytes([good[5] ^ 0x10]) + good[6:],
        good[:20] + bytes([good[20] ^ 0x80]) + good[21:],
        good[:-1] + bytes([good[-1] ^ 1]),
        bytes([VERSION + 1]) + good[1:],  # another version: a newer one, and the one before
        bytes([VERSION - 1]) + good[1:],
        other.seal_identity(other.keys(token), person(2), soon()),  # another deployment, same token
        b"",
        b"{}",
    ]
    # The same token's value stored for another token.
    other_token = make_jwt()
    fleet.store(other_token, person(3), soon())
    assert fleet.lookup(other_token).entry is not None
    forged_values.append(good)
    for value in forged_values[:-1]:
        client.set(entry_key, value)
        assert fleet.lookup(token).entry is None
    moved_to = fleet._entry_key(fleet._sealer.keys(other_token)).encode()
    client.set(moved_to, good)
    assert fleet.lookup(other_token).entry is None
    # Rejections and the throttle are sealed too: forged ones are ignored.
    client.set(rejection_key, b"\x01" + os.urandom(40))
    client.set(throttle_key, client.get(rejection_key) or b"")
    assert fleet.lookup(rejected).rejected_until is None
    assert fleet.try_lead(make_jwt(), 1)[1].throttled_until is None
    # A value of the wrong type is a miss (Redis answers an error), never an exception.
    client.delete(entry_key)
    client.sadd(entry_key, b"x")
    assert fleet.lookup(token) == NOTHING


# --- single flight ----------------------------------------------------------------------------------------------


def test_of_many_threads_exactly_one_leads_and_the_others_get_its_result(
    make_fleet: Callable[..., FleetCache],
) -> None:
    instances = [make_fleet() for _ in range(4)]
    token = make_jwt()
    threads = 24
    barrier = threading.Barrier(threads)
    led: list[int] = []
    results: dict[int, SharedState] = {}

    def request(n: int) -> None:
        fleet = instances[n % len(instances)]
        barrier.wait()
        if fleet.try_lead(token, lease_seconds=10)[0]:
            led.append(n)
            time.sleep(0.2)  # the Kaizala call
            fleet.store(token, person(7), soon())
        else:
            results[n] = fleet.await_result(token, deadline=time.monotonic() + 10)

    workers = [threading.Thread(target=request, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    elapsed = time.monotonic() - started
    assert len(led) == 1
    assert len(results) == threads - 1
    assert all(state.entry is not None and state.entry.identity == person(7) for state in results.values())
    assert elapsed < 5  # waiters returned with the result, not at their deadline


def _lead_in_process(url: str, token: str, barrier: Any, queue: Any) -> None:
    fleet = FleetCache(url, SECRET, timeout_ms=1000)
    barrier.wait()
    if fleet.try_lead(token, lease_seconds=10)[0]:
        time.sleep(0.2)
        fleet.store(token, person(8), soon())
        queue.put(("led", None))
    else:
        state = fleet.await_result(token, deadline=time.monotonic() + 10)
        queue.put(("waited", state.entry.identity.id if state.entry else None))
    fleet.close()


def test_of_many_processes_exactly_one_leads(redis_db: RedisServer) -> None:
    redis_db.client().flushall()
    context = multiprocessing.get_context("spawn")
    processes = 5
    barrier = context.Barrier(processes)
    queue = context.Queue()
    token = make_jwt()
    workers = [
        context.Process(target=_lead_in_process, args=(redis_db.url, token, barrier, queue)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=60) for _ in range(processes)]
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(kind for kind, _ in outcomes) == ["led"] + ["waited"] * (processes - 1)
    assert all(user_id == person(8).id for kind, user_id in outcomes if kind == "waited")


def test_a_dead_leader_costs_at_most_one_lease(make_fleet: Callable[..., FleetCache]) -> None:
    leader, waiter = make_fleet(), make_fleet()
    token = make_jwt()
    assert leader.try_lead(token, lease_seconds=0.6)[0]
    leader.close()  # dies: never stores, never releases
    assert not waiter.try_lead(token, lease_seconds=5)[0]
    started = time.monotonic()
    state = waiter.await_result(token, deadline=time.monotonic() + 20)
    waited = time.monotonic() - started
    assert state == NOTHING
    assert 0.3 < waited < 0.6 + CALL_BOUND  # until the lease ran out, not the deadline
    assert waiter.try_lead(token, lease_seconds=5)[0]


def test_nobody_waits_past_the_deadline(make_fleet: Callable[..., FleetCache]) -> None:
    leader, waiter = make_fleet(), make_fleet()
    token = make_jwt()
    assert leader.try_lead(token, lease_seconds=60)[0]
    started = time.monotonic()
    assert waiter.await_result(token, deadline=time.monotonic() + 0.3) == NOTHING
    assert 0.25 < time.monotonic() - started < 0.3 + CALL_BOUND


def test_a_released_lease_lets_a_waiter_lead_at_once(make_fleet: Callable[..., FleetCache]) -> None:
    leader, waiter = make_fleet(), make_fleet()
    token = make_jwt()
    assert leader.try_lead(token, lease_seconds=60)[0]
    threading.Timer(0.2, leader.release, args=(token,)).start()
    started = time.monotonic()
    assert waiter.await_result(token, deadline=time.monotonic() + 20) == NOTHING
    assert time.monotonic() - started < 0.2 + CALL_BOUND
    assert waiter.try_lead(token, lease_seconds=5)[0]


def test_a_rejection_or_throttle_ends_the_wait(make_fleet: Callable[..., FleetCache]) -> None:
    leader, waiter = make_fleet(), make_fleet()
    rejected, throttled = make_jwt(), make_jwt()
    assert leader.try_lead(rejected, 60)[0]
    assert leader.try_lead(throttled, 60)[0]
    threading.Timer(0.1, leader.store_rejection, args=(rejected, soon(30))).start()
    assert waiter.await_result(rejected, time.monotonic() + 20).rejected_until is not None
    threading.Timer(0.1, leader.throttle, args=(soon(5),)).start()
    assert waiter.await_result(throttled, time.monotonic() + 20).throttled_until is not None


def test_a_late_leader_cannot_end_the_next_leaders_lease(make_fleet: Callable[..., FleetCache]) -> None:
    slow, next_leader, waiter = make_fleet(), make_fleet(), make_fleet()
    token = make_jwt()
    assert slow.try_lead(token, lease_seconds=0.2)[0]
    time.sleep(0.4)
    assert next_leader.try_lead(token, lease_seconds=60)[0]
    slow.release(token)  # too late: not its lease any more
    assert not waiter.try_lead(token, lease_seconds=60)[0]


# --- purge ------------------------------------------------------------------------------------------------------


def run_purge(redis_db: RedisServer, *args: str, secret_: bytes = SECRET) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOKEN_CACHE_REDIS_URL": redis_db.url, "TOKEN_CACHE_REDIS_SECRET": secret_.decode()}
    return subprocess.run(
        [sys.executable, "-m", "shared.purge", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


class Heard:
    def __init__(self) -> None:
        self.tags: list[tuple[float, str | None]] = []

    def __call__(self, tag: str | None) -> None:
        self.tags.append((time.monotonic(), tag))


def test_purge_user_reaches_every_subscriber_and_removes_the_users_entries(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer
) -> None:
    one, two = make_fleet(), make_fleet()
    heard_one, heard_two = Heard(), Heard()
    one.subscribe(heard_one)
    two.subscribe(heard_two)
    assert one.subscribed.wait(10)
    assert two.subscribed.wait(10)
    alice_tokens, bob_token = [make_jwt(), make_jwt()], make_jwt()
    for token in alice_tokens:
        one.store(token, person(1), soon())
    one.store(bob_token, person(2), soon())
    result = run_purge(redis_db, "--user", person(1).id)
    done = time.monotonic()
    assert result.returncode == 0, result.stderr
    assert "purged 2 shared identities of that user" in result.stdout
    assert person(1).id not in result.stdout + result.stderr
    tag = one.user_tag(person(1).id)
    assert wait_for(lambda: heard_one.tags and heard_two.tags, 1.0)
    assert heard_one.tags[0][1] == heard_two.tags[0][1] == tag
    assert max(heard_one.tags[0][0], heard_two.tags[0][0]) - done < 1.0
    assert all(two.lookup(token).entry is None for token in alice_tokens)
    assert two.lookup(bob_token).entry is not None
    assert person(1).id not in tag


def test_purge_all_reaches_subscribers_and_empties_the_shared_cache(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer
) -> None:
    fleet = make_fleet()
    other_deployment = make_fleet(secret_=OTHER_SECRET)
    heard = Heard()
    fleet.subscribe(heard)
    assert fleet.subscribed.wait(10)
    tokens = [make_jwt() for _ in range(5)]
    for n, token in enumerate(tokens):
        fleet.store(token, person(n), soon())
    kept = make_jwt()
    other_deployment.store(kept, person(9), soon())
    result = run_purge(redis_db, "--all")
    assert result.returncode == 0, result.stderr
    assert "purged 5 shared identities" in result.stdout
    assert wait_for(lambda: bool(heard.tags), 1.0)
    assert heard.tags[0][1] is None
    assert all(fleet.lookup(token).entry is None for token in tokens)
    assert other_deployment.lookup(kept).entry is not None  # another deployment's keys are not ours to purge


def test_purge_cli_refuses_bad_settings_and_reports_an_unreachable_redis(redis_db: RedisServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEN_CACHE_REDIS")}
    command = [sys.executable, "-m", "shared.purge", "--all"]
    unset = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert unset.returncode == 2
    assert "TOKEN_CACHE_REDIS_URL is not set" in unset.stderr
    plain = {**env, "TOKEN_CACHE_REDIS_URL": "redis://cache.example.net:6379/0", "TOKEN_CACHE_REDIS_SECRET": "x" * 40}
    refused = subprocess.run(command, env=plain, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "TOKEN_CACHE_REDIS_URL must use rediss://" in refused.stderr
    password = secret("purge-cli-access-key-" + os.urandom(4).hex())
    down = {**plain, "TOKEN_CACHE_REDIS_URL": f"redis://:{password}@127.0.0.1:1/0"}
    unreachable = subprocess.run(command, env=down, capture_output=True, text=True, timeout=60, check=False)
    assert unreachable.returncode == 1
    assert "127.0.0.1:1 did not answer" in unreachable.stderr
    assert password not in unreachable.stdout + unreachable.stderr


# --- Redis failing ----------------------------------------------------------------------------------------------


class Traffic:
    """Threads calling lookup/store/try_lead in a loop, recording how long every call took."""

    def __init__(self, fleet: FleetCache, threads: int = 4) -> None:
        self.fleet = fleet
        self.durations: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        token = make_jwt()
        while not self._stop.is_set():
            for call in (
                lambda: self.fleet.lookup(token),
                lambda: self.fleet.store(token, person(1), soon()),
                lambda: self.fleet.try_lead(token, 1)[0],
            ):
                started = time.monotonic()
                try:
                    call()
                except BaseException as error:  # the point: nothing may escape
                    self.errors.append(error)
                self.durations.append(time.monotonic() - started)
            time.sleep(0.005)

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def shares(fleet: FleetCache) -> bool:
    token = make_jwt()
    fleet.store(token, person(1), soon())
    return fleet.lookup(token).entry is not None


def test_killed_then_restarted_redis_is_skipped_then_used_again(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    fleet = FleetCache(own_redis.url, SECRET, timeout_ms=TIMEOUT_MS, open_seconds=OPEN_SECONDS)
    try:
        assert shares(fleet)
        with Traffic(fleet) as traffic:
            time.sleep(0.3)
            own_redis.kill()
            time.sleep(1.5)
            assert fleet.breaker.is_open
            assert fleet.lookup(make_jwt()) == NOTHING
            assert fleet.try_lead(make_jwt(), 5)[0]  # Redis cannot tell: lead locally
            skipped = time.monotonic()
            for _ in range(1000):
                fleet.lookup(make_jwt())
            open_cost = (time.monotonic() - skipped) / 1000
            own_redis.start()
            assert wait_for(lambda: not fleet.breaker.is_open, OPEN_SECONDS + 5)
            time.sleep(0.3)
        assert not traffic.errors
        assert max(traffic.durations) < CALL_BOUND
        assert open_cost < 0.002  # skipping costs next to nothing
        assert shares(fleet)
    finally:
        fleet.close()
    assert_one_warning_per_change(caplog, own_redis.port)


def test_a_paused_redis_costs_each_call_at_most_the_timeout(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    fleet = FleetCache(own_redis.url, SECRET, timeout_ms=TIMEOUT_MS, open_seconds=OPEN_SECONDS)
    try:
        assert shares(fleet)
        with Traffic(fleet) as traffic:
            time.sleep(0.2)
            own_redis.pause(2.0)
            time.sleep(1.0)
            assert fleet.breaker.is_open
            assert wait_for(lambda: not fleet.breaker.is_open, 2.0 + OPEN_SECONDS + 5)
            time.sleep(0.3)
        assert not traffic.errors
        assert max(traffic.durations) < CALL_BOUND
        assert shares(fleet)
    finally:
        fleet.close()
    assert_one_warning_per_change(caplog, own_redis.port)


def test_flushall_while_waiting_lets_waiters_lead_and_breaks_nothing(
    make_fleet: Callable[..., FleetCache], redis_db: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    leader, waiter = make_fleet(), make_fleet()
    token, cached = make_jwt(), make_jwt()
    leader.store(cached, person(1), soon())
    assert leader.try_lead(token, lease_seconds=60)[0]
    with Traffic(make_fleet()) as traffic:
        threading.Timer(0.2, redis_db.client().flushall).start()
        started = time.monotonic()
        assert waiter.await_result(token, deadline=time.monotonic() + 20) == NOTHING
        assert time.monotonic() - started < 0.2 + CALL_BOUND
    assert not traffic.errors
    assert waiter.lookup(cached) == NOTHING  # flushed: a miss, checked with Kaizala again
    assert waiter.try_lead(token, 5)[0]
    assert not warnings_of(caplog)


def test_the_subscription_survives_a_restart_without_telling_anyone_to_forget_everything(
    own_redis: RedisServer,
) -> None:
    fleet = FleetCache(own_redis.url, SECRET, timeout_ms=TIMEOUT_MS, open_seconds=OPEN_SECONDS)
    heard = Heard()
    channel = f"{Sealer(SECRET).namespace}:purge"
    try:
        fleet.subscribe(heard)
        assert fleet.subscribed.wait(10)
        own_redis.restart()  # the subscribed connection dies with the old process
        tag = fleet.user_tag("u-9")
        # Heard only once the listener has subscribed again, on a new connection.
        assert wait_for(lambda: own_redis.client().publish(channel, tag) > 0 and tag in [t for _, t in heard.tags], 10)
        # Forgetting everything here would send every user of every instance to Kaizala at once after each
        # failover; a purge missed meanwhile is honoured by the local copies' short life instead.
        assert None not in [t for _, t in heard.tags]
    finally:
        fleet.close()


def test_the_url_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kaizala_auth")
    password = secret("fleet-access-key-" + os.urandom(4).hex())
    fleet = FleetCache(f"redis://:{password}@127.0.0.1:1/0", SECRET, timeout_ms=TIMEOUT_MS)
    try:
        for _ in range(5):
            assert fleet.lookup(make_jwt()) == NOTHING
    finally:
        fleet.close()
    assert warnings_of(caplog)
    assert all(password not in r.getMessage() for r in caplog.records)
    assert password not in repr(fleet.__dict__.get("where"))


def _child_uses_inherited_fleet(fleet: FleetCache, queue: Any) -> None:
    heard = Heard()
    fleet.subscribe(heard)  # a listener thread of its own: the parent's does not exist in a forked child
    token = make_jwt()
    fleet.store(token, person(4), soon())
    ok = fleet.lookup(token).entry is not None and fleet.subscribed.wait(10)
    queue.put(ok)
    wait_for(lambda: bool(heard.tags), 10)
    queue.put(heard.tags[0][1] if heard.tags else "nothing heard")


def test_a_forked_child_gets_its_own_connections_and_listener(make_fleet: Callable[..., FleetCache]) -> None:
    fleet = make_fleet()
    heard = Heard()
    fleet.subscribe(heard)
    assert fleet.subscribed.wait(10)
    assert shares(fleet)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_uses_inherited_fleet, args=(fleet, queue))
    child.start()
    try:
        assert queue.get(timeout=30) is True
        assert fleet.purge_user("u-5") == 0
        assert queue.get(timeout=30) == fleet.user_tag("u-5")
    finally:
        child.join(timeout=30)
    assert wait_for(lambda: bool(heard.tags), 1.0)  # the parent's listener still works
    assert shares(fleet)


def test_rediss_verifies_the_certificate_and_host_and_needs_tls_1_2() -> None:
    client = RedisClient(
        "rediss://:an-access-key@contoso.redis.cache.windows.net:6380/0",
        timeout_ms=100,
        max_connections=2,
        failures_to_open=3,
        open_seconds=1,
    )
    client.kind = SINGLE  # as detected (nothing listens at that name here)
    fleet = client
    try:
        built = client.connect(0.1, 2)
        assert isinstance(built, redis.Redis)
        connection = built.connection_pool.make_connection()  # built, not connected
        assert type(connection).__name__ == "SSLConnection"
        assert connection.cert_reqs == ssl.CERT_REQUIRED
        assert connection.check_hostname is True
        assert connection.ssl_min_version == ssl.TLSVersion.TLSv1_2
        assert fleet.where == "contoso.redis.cache.windows.net:6380"
    finally:
        fleet.close()


def test_from_settings_is_none_when_redis_is_off() -> None:
    assert FleetCache.from_settings(FleetSettings()) is None
    fleet = FleetCache.from_settings(
        FleetSettings(redis_url="redis://127.0.0.1:1/0", redis_secret=SECRET, redis_timeout_ms=250)
    )
    assert fleet is not None
    assert fleet.timeout == 0.25
    fleet.close()
