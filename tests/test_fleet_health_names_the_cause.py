"""What an operator reads when the fleet's Redis is degraded: one WARNING per change of state, naming the cause in
words they act on (permission denied for a command, sign-in failed, refused, timed out), including a permission
problem that leaves reads working; and `python -m shared.purge --check`, the one-shot check a deployer runs."""

import logging
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from devserver.launch import ROOT
from shared.fleet import FleetCache
from shared.fleet.health import describe
from shared.identity import Identity
from tests.helpers import make_jwt, wait_for
from tests.redis_server import NO_PUBSUB, SECRET, RedisServer, require_redis

require_redis()

pytestmark = [pytest.mark.redis]

# What a redis-py client needs to connect and read, and no more: a read-only data access policy.
READ_ONLY = ["on", ">reader-password", "~*", "&*", "-@all", "+@read", "+ping", "+info", "+subscribe", "+client"]


def person() -> Identity:
    return Identity(id="user-1", name="Name", phone_number=None, picture_url=None, action_package_id="card")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kaizala_auth" and r.levelno == logging.WARNING]


def use_it(fleet: FleetCache, rounds: int = 30) -> None:
    """What requests do with the fleet: look up, lead, share."""
    for _ in range(rounds):
        token = make_jwt()
        fleet.lookup(token)
        fleet.try_lead(token, 1.0)
        fleet.store(token, person(), time.time() + 600)


@pytest.fixture
def readers_redis(own_redis: RedisServer) -> Iterator[RedisServer]:
    own_redis.client().acl_setuser("reader", reset=True)
    own_redis.client().execute_command("ACL", "SETUSER", "reader", *READ_ONLY)
    return own_redis


def test_a_read_only_user_warns_once_naming_the_denied_command_though_reads_work(
    readers_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    fleet = FleetCache(f"redis://reader:reader-password@127.0.0.1:{readers_redis.port}/0", SECRET, timeout_ms=500)
    try:
        use_it(fleet)
        assert not fleet.skipped  # its reads succeed: the breaker alone would never have said a word
        assert warnings_of(caplog) == [
            f"token cache Redis at 127.0.0.1:{readers_redis.port}: permission denied for the SET command: the app's "
            "Redis user needs read, write and pub/sub access; until this is fixed, identities are not shared"
        ]
        assert fleet.health_cause is not None
        assert "SET" in fleet.health_cause
        # Access granted: the next write works, and the log says so once.
        readers_redis.client().execute_command("ACL", "SETUSER", "reader", "+@all")
        use_it(fleet, rounds=5)
        assert warnings_of(caplog)[1:] == [
            f"token cache Redis at 127.0.0.1:{readers_redis.port} answers again: sharing resumes"
        ]
        assert fleet.health_cause is None
    finally:
        fleet.close()


def test_a_wrong_password_is_named_a_failed_sign_in(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    own_redis.client().config_set("requirepass", "the-right-one")
    fleet = FleetCache(f"redis://:the-wrong-one@127.0.0.1:{own_redis.port}/0", SECRET, timeout_ms=500)
    try:
        use_it(fleet, rounds=10)
        (warning,) = warnings_of(caplog)
        assert "sign-in failed" in warning
        assert "the-wrong-one" not in warning
        assert "the-right-one" not in warning
    finally:
        fleet.close()


def test_nothing_listening_is_named_refused_and_a_hang_a_timeout(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    fleet = FleetCache(own_redis.url, SECRET, timeout_ms=100, open_seconds=0.3)
    try:
        use_it(fleet, rounds=2)
        own_redis.pause(1.5)
        use_it(fleet, rounds=3)
        assert "timed out (no answer within 100 ms)" in warnings_of(caplog)[0]
        time.sleep(1.6)
        use_it(fleet, rounds=2)
        assert "answers again" in warnings_of(caplog)[1]
        own_redis.kill()
        use_it(fleet, rounds=3)
        assert "refused the connection" in warnings_of(caplog)[2]
        assert len(warnings_of(caplog)) == 3
    finally:
        fleet.close()


def test_a_cluster_redirect_and_an_untrusted_certificate_are_named() -> None:
    moved = redis.exceptions.ResponseError("MOVED 3999 127.0.0.1:6381")
    assert describe(moved, timeout_ms=100).kind == "cluster_redirect"
    untrusted = redis.exceptions.ConnectionError("Error 1 connecting: [SSL: CERTIFICATE_VERIFY_FAILED]")
    untrusted.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause = describe(untrusted, timeout_ms=100)
    assert cause.kind == "certificate"
    assert "TOKEN_CACHE_REDIS_CA_FILE" in cause.text


def purge_check(url: str) -> subprocess.CompletedProcess[str]:
    env = {"TOKEN_CACHE_REDIS_URL": url, "TOKEN_CACHE_REDIS_SECRET": SECRET.decode(), "PATH": ""}
    command = [sys.executable, "-m", "shared.purge", "--check"]
    return subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_check_prints_each_step_and_its_verdict(own_redis: RedisServer) -> None:
    done = purge_check(own_redis.url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Redis at 127.0.0.1:{own_redis.port}"
    assert lines[1].startswith("server: ok: a single endpoint")
    assert lines[2].startswith("write, read, delete: ok: ")
    assert lines[3].startswith("purge messages: ok: ")
    assert lines[-1] == "verdict: the fleet cache works with these settings"
    assert own_redis.dump() == {}  # the probe was deleted


def test_the_check_fails_naming_why(readers_redis: RedisServer) -> None:
    done = purge_check(f"redis://reader:reader-password@127.0.0.1:{readers_redis.port}/0")
    assert done.returncode == 1
    assert "write, read, delete: FAILED: permission denied for the SET command" in done.stdout
    assert done.stdout.splitlines()[-1] == "verdict: the fleet cache would not work"
    readers_redis.kill()
    done = purge_check(readers_redis.url)
    assert done.returncode == 1
    assert "server: FAILED: refused the connection" in done.stdout


def test_a_user_without_pub_sub_shares_but_is_told_it_hears_no_purge(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    own_redis.add_user("no-pubsub", "no-pubsub-password", NO_PUBSUB)
    fleet = FleetCache(f"redis://no-pubsub:no-pubsub-password@127.0.0.1:{own_redis.port}/0", SECRET, timeout_ms=500)
    try:
        fleet.subscribe(lambda _tag: None)
        token = make_jwt()
        fleet.store(token, person(), time.time() + 600)
        assert fleet.lookup(token).entry is not None  # sharing works
        assert wait_for(lambda: any("purge" in w for w in warnings_of(caplog)), 5)
        time.sleep(2.5)  # the listener keeps retrying: still one WARNING
        (warning,) = warnings_of(caplog)
        assert warning.startswith(f"the purge subscription to token cache Redis at 127.0.0.1:{own_redis.port}: ")
        assert "permission denied for the SUBSCRIBE command" in warning or "purge channel" in warning
        assert fleet.health_cause is None  # the commands' health is not the subscription's
    finally:
        fleet.close()


def test_redis_pys_own_redirect_errors_are_named_a_cluster_redirect() -> None:
    """redis-py's parser turns MOVED into MovedError without the word in its text."""
    assert describe(redis.exceptions.MovedError("3999 127.0.0.1:6381"), timeout_ms=100).kind == "cluster_redirect"
    assert describe(redis.exceptions.AskError("3999 127.0.0.1:6381"), timeout_ms=100).kind == "cluster_redirect"


def test_giving_back_no_lease_is_no_round_trip_and_no_probe(own_redis: RedisServer) -> None:
    fleet = FleetCache(own_redis.url, SECRET, timeout_ms=100, open_seconds=0.2)
    try:
        use_it(fleet, rounds=1)
        own_redis.kill()
        for _ in range(3):
            fleet.lookup(make_jwt())
        assert fleet.breaker.is_open
        time.sleep(0.3)  # a probe is due
        fleet.release(make_jwt())  # nothing held: nothing sent, so nothing proves Redis answers
        assert fleet.breaker.is_open
    finally:
        fleet.close()
