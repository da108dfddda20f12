"""No request waits on background work: refreshes are bounded and skipped rather than queued, survive fork, never
delay interpreter exit, and a miss that races with its leader's completion makes no second call.

Real threads, real processes, a real upstream on 127.0.0.1; the wall clock is moved only where a cache lifetime
would otherwise make a test take minutes.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import ValidateToken
from devserver.launch import ROOT
from shared.authenticator import root
from shared.cache.identity_cache import MAX_REFRESHES
from shared.identity import Identity
from tests.helpers import Reply, identity_payload, json_of, lookup, make_jwt, new_cache, request, upstream_server

UPSTREAM_SECONDS = 0.2


class MovableWallClock:
    """time.time() that a test can move forward; everything else keeps real time."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self._real() + self.offset


@pytest.fixture
def wall_clock(monkeypatch) -> MovableWallClock:
    clock = MovableWallClock()
    monkeypatch.setattr(time, "time", clock)
    return clock


def use(monkeypatch, url: str) -> None:
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", url)
    monkeypatch.setenv("KAIZALA_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "100")
    monkeypatch.setenv("TOKEN_REFRESH_AHEAD", "1")


def cache_all(tokens: list[str]) -> None:
    with ThreadPoolExecutor(len(tokens)) as pool:
        statuses = list(pool.map(lambda token: ValidateToken.main(request(token=token)).status_code, tokens))
    assert statuses == [200] * len(tokens)


def test_a_request_never_waits_behind_other_tokens_refreshes(monkeypatch, wall_clock) -> None:
    """Before: 40 refreshes queued on two threads, and the last token's request waited for the queue (2.95 s)."""
    tokens = [make_jwt() for _ in range(40)]
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=UPSTREAM_SECONDS)) as up:
        use(monkeypatch, up.url)
        cache_all(tokens)
        calls_after_caching = up.count
        with up.lock:
            up.max_active = up.active
        wall_clock.offset += 85  # every entry is in its refresh window
        for token in tokens:  # each hit answers at once and may start a refresh
            started = time.monotonic()
            assert ValidateToken.main(request(token=token)).status_code == 200
            assert time.monotonic() - started < UPSTREAM_SECONDS  # a hit never waits for its refresh
        refreshes = up.count - calls_after_caching
        wall_clock.offset += 20  # every entry that was not refreshed has expired
        started = time.monotonic()
        response = ValidateToken.main(request(token=tokens[-1]))
        waited = time.monotonic() - started
    assert response.status_code == 200
    assert waited < UPSTREAM_SECONDS + 0.6  # its own call, not a queue of other tokens' refreshes
    assert refreshes <= MAX_REFRESHES  # refreshes that could not start at once were skipped, not queued
    assert up.max_active <= MAX_REFRESHES + 1


def test_a_miss_racing_with_its_leaders_completion_makes_no_second_call() -> None:
    """The follower reaches its locked section just after the leader stored the identity and left."""
    cache = new_cache()
    calls: list[float] = []
    leader_done = threading.Event()

    def fetch(_deadline: float) -> Identity:
        calls.append(time.monotonic())
        time.sleep(0.05)
        return Identity("u", "U", None, None, "card")

    def leader() -> None:
        lookup(cache, fetch, seconds=100, max_calls=4)
        leader_done.set()

    def not_after_once_the_leader_is_done() -> float | None:
        assert leader_done.wait(5)
        return None

    thread = threading.Thread(target=leader)
    thread.start()
    while not calls:  # the leader's call is in flight
        time.sleep(0.001)
    # The follower found no entry (the leader has not finished), then reads the token's exp while the leader
    # finishes: this is the window in which it used to become a second leader.
    identity, source = lookup(cache, fetch, seconds=100, max_calls=4, not_after=not_after_once_the_leader_is_done)
    thread.join(5)
    assert identity.id == "u"
    assert source == "hit"
    assert len(calls) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_refreshes_and_validates_without_hanging(monkeypatch, wall_clock) -> None:
    """Before: the child inherited the parent's queued refresh (its threads do not exist in the child) and every
    later request for that token waited forever; a refresh the child started itself never ran either."""
    parent_refreshing, child_refreshes = make_jwt(), make_jwt()
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.5)) as up:
        use(monkeypatch, up.url)
        cache_all([parent_refreshing, child_refreshes])
        wall_clock.offset += 85
        assert ValidateToken.main(request(token=parent_refreshing)).status_code == 200  # refresh now in flight
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only when both tokens validate promptly
            code = 1
            try:
                assert ValidateToken.main(request(token=child_refreshes)).status_code == 200  # starts a refresh
                wall_clock.offset += 20  # both entries expired (unless refreshed)
                for token in (parent_refreshing, child_refreshes):
                    assert ValidateToken.main(request(token=token)).status_code == 200
                code = 0
            finally:
                os._exit(code)
        ends = time.monotonic() + 10
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < ends:
            time.sleep(0.05)
        if status[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(status[1]) == 0


def test_refreshes_in_flight_never_delay_interpreter_exit() -> None:
    """Before: 40 queued refreshes of 0.25 s delayed exit by 5.9 s (the executor's threads are joined at exit)."""
    script = textwrap.dedent(
        """
        import os, sys, time
        from concurrent.futures import ThreadPoolExecutor
        sys.path.insert(0, os.getcwd())
        import ValidateToken
        from tests.helpers import make_jwt, request

        offset = [0.0]
        real = time.time
        time.time = lambda: real() + offset[0]
        tokens = [make_jwt() for _ in range(40)]
        with ThreadPoolExecutor(40) as pool:
            assert set(pool.map(lambda t: ValidateToken.main(request(token=t)).status_code, tokens)) == {200}
        offset[0] += 85
        for token in tokens:
            assert ValidateToken.main(request(token=token)).status_code == 200
        print("exiting", flush=True)
        """
    )
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.25)) as up:
        env = {
            **os.environ,
            "KAIZALA_IDENTITY_URL": up.url,
            "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "com.contoso.productpicker",
            "TOKEN_CACHE_SECONDS": "100",
            "TOKEN_REFRESH_AHEAD": "1",
            "KAIZALA_MAX_CONCURRENT_CALLS": "64",
        }
        process = subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        exiting = time.monotonic()
        process.wait(30)
        exit_took = time.monotonic() - exiting
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert line == b"exiting\n", stderr
    assert process.returncode == 0, stderr
    assert exit_took < 1.0


def test_refresh_outcome_still_lands_for_the_next_request(monkeypatch, wall_clock) -> None:
    """Refreshes that do start still do their job: the entry is extended without a request waiting."""
    token = make_jwt()
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.05)) as up:
        use(monkeypatch, up.url)
        cache_all([token])
        wall_clock.offset += 85
        assert json_of(ValidateToken.main(request(token=token)))["id"] == "user-1"
        ends = time.monotonic() + 5
        while up.count < 2 or root().admission.busy:  # the refresh has been answered and stored
            assert time.monotonic() < ends
            time.sleep(0.01)
        wall_clock.offset += 20  # the first entry has expired; the refreshed one has not
        assert ValidateToken.main(request(token=token)).status_code == 200
        assert up.count == 2
