"""A slow Kaizala cannot take the app down: upstream calls are capped per process, and cached users keep getting
200 at hit speed while every slot hangs.

The Functions Python worker runs sync functions on a bounded thread pool; the tests run requests on one, the
same way.
"""

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import ValidateToken
from shared.settings import current_settings, default_max_concurrent_calls
from tests.helpers import Reply, identity_payload, json_of, make_jwt, request, upstream_server

WORKER_THREADS = 8
CAP = 4
DEADLINE = 3.0


def timed(pool: ThreadPoolExecutor, token: str) -> "Future[tuple[int, dict[str, str], float]]":
    submitted = time.monotonic()

    def run() -> tuple[int, dict[str, str], float]:
        response = ValidateToken.main(request(token=token))
        return response.status_code, dict(response.headers), time.monotonic() - submitted

    return pool.submit(run)


def test_cached_users_keep_answering_fast_while_every_slot_hangs(monkeypatch) -> None:
    """Before the cap, the hanging misses took every worker thread for the whole deadline, and cached requests
    queued behind them (3 s and more)."""
    cached = make_jwt()
    with upstream_server(
        lambda _n, t: Reply(body=identity_payload()) if t == cached else Reply(body=identity_payload(), delay=30)
    ) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        monkeypatch.setenv("KAIZALA_TIMEOUT_SECONDS", str(DEADLINE))
        monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", str(CAP))
        assert ValidateToken.main(request(token=cached)).status_code == 200

        with ThreadPoolExecutor(WORKER_THREADS) as pool:
            hanging = [timed(pool, make_jwt()) for _ in range(CAP)]
            while up.active < CAP:  # every slot is now held by a hanging call
                time.sleep(0.005)
            turned_away = [timed(pool, make_jwt()) for _ in range(WORKER_THREADS)]
            hits = [timed(pool, cached) for _ in range(200)]
            hit_answers = [future.result() for future in hits]
            busy_answers = [future.result() for future in turned_away]
            hang_answers = [future.result() for future in hanging]

    assert {status for status, _, _ in hit_answers} == {200}
    assert max(elapsed for _, _, elapsed in hit_answers) < 1.0  # not a deadline: the hanging calls last 3 s
    for status, headers, elapsed in busy_answers:
        assert status == 503
        assert 1 <= int(headers["Retry-After"]) <= DEADLINE  # when the hanging calls' slots are sure to be free
        assert elapsed < 1.0
    assert {status for status, _, _ in hang_answers} == {503}
    assert up.max_active == CAP  # never more upstream calls than the cap


def test_a_miss_gets_a_slot_freed_within_its_short_wait(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.1)) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", "1")
        barrier = threading.Barrier(2)

        def call(token: str) -> int:
            barrier.wait()
            return ValidateToken.main(request(token=token)).status_code

        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(call, [make_jwt(), make_jwt()])) == [200, 200]
        assert up.max_active == 1


def test_the_busy_answer_is_the_documented_503(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=2)) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", "1")
        with ThreadPoolExecutor(1) as pool:
            holding = pool.submit(ValidateToken.main, request(token=make_jwt()))
            while not up.active:
                time.sleep(0.005)
            response = ValidateToken.main(request(token=make_jwt()))
            holding.result()
    assert response.status_code == 503
    assert json_of(response)["error"] == "identity_unavailable"
    assert "Try again" in json_of(response)["message"]


@pytest.mark.parametrize(
    ("pool", "expected"),
    [(None, None), ("6", 3), ("1", 2), ("40", 20), ("junk", None)],
)
def test_the_default_cap_is_half_the_workers_pool(monkeypatch, pool, expected) -> None:
    monkeypatch.delenv("KAIZALA_MAX_CONCURRENT_CALLS")
    if pool is None:
        monkeypatch.delenv("PYTHON_THREADPOOL_THREAD_COUNT", raising=False)
    else:
        monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", pool)
    cap = current_settings().max_concurrent_calls
    assert cap == (expected if expected is not None else default_max_concurrent_calls(None))
    assert cap >= 2


def test_a_429_stops_misses_until_its_retry_after_while_hits_keep_answering(monkeypatch) -> None:
    cached, throttled = make_jwt(), make_jwt()
    with upstream_server(
        lambda _n, t: Reply(429, headers={"Retry-After": "2"}) if t == throttled else Reply(body=identity_payload())
    ) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        assert ValidateToken.main(request(token=cached)).status_code == 200
        throttled_at = time.monotonic()
        first = ValidateToken.main(request(token=throttled))
        assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
        calls = up.count

        later = ValidateToken.main(request(token=make_jwt()))  # another token: not sent while throttled
        assert (later.status_code, json_of(later)["error"]) == (503, "identity_unavailable")
        assert 1 <= int(later.headers["Retry-After"]) <= 2
        assert ValidateToken.main(request(token=cached)).status_code == 200  # a hit is still answered
        assert up.count == calls

        time.sleep(max(0.0, throttled_at + 2.1 - time.monotonic()))
        assert ValidateToken.main(request(token=make_jwt())).status_code == 200  # Kaizala is asked again
        assert up.count == calls + 1
