"""Cache lifetimes, keys, bounds and the negative cache, through ValidateToken and on IdentityCache itself."""

import hashlib
import time
from collections.abc import Callable

import pytest
import requests_mock

import ValidateToken
from shared.authenticator import root
from shared.errors import IdentityUnavailable, InvalidToken
from shared.identity import Identity
from tests.conftest import MOCK_URL
from tests.helpers import identity_payload, lookup, make_jwt, new_cache, request

IDENTITY = Identity("u", "U", None, None, "card")


def scripted(outcomes: list[Exception | Identity]) -> tuple[list[int], Callable[[float], Identity]]:
    calls: list[int] = []

    def fetch(_deadline: float) -> Identity:
        calls.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return calls, fetch


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kaizala() -> requests_mock.Mocker:
    with requests_mock.Mocker() as mocker:
        mocker.get(MOCK_URL, json=identity_payload("user-1"))
        yield mocker


@pytest.fixture
def wall_clock(monkeypatch) -> Clock:
    clock = Clock(time.time())
    monkeypatch.setattr(time, "time", clock)
    return clock


def test_second_request_is_a_cache_hit(kaizala) -> None:
    token = make_jwt()
    for _ in range(3):
        assert ValidateToken.main(request(token=token)).status_code == 200
    assert kaizala.call_count == 1


def test_cache_is_keyed_by_sha256_never_the_raw_token(kaizala) -> None:
    token = make_jwt()
    ValidateToken.main(request(token=token))
    assert root().cache("kaizala").keys() == {hashlib.sha256(token.encode()).hexdigest()}


def test_entry_expires_after_token_cache_seconds(kaizala, monkeypatch, wall_clock) -> None:
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "60")
    token = make_jwt(ttl=1800)
    ValidateToken.main(request(token=token))
    wall_clock.now += 59
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 1
    wall_clock.now += 2
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 2


def test_entry_never_outlives_the_jwt_exp(kaizala, monkeypatch, wall_clock) -> None:
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "1800")
    token = make_jwt(exp=wall_clock.now + 10)
    ValidateToken.main(request(token=token))
    wall_clock.now += 9
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 1
    wall_clock.now += 2  # past exp, inside the clock skew: the cache no longer answers, Kaizala is asked
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 2
    wall_clock.now += 60  # past exp and skew: refused locally
    response = ValidateToken.main(request(token=token))
    assert response.status_code == 401
    assert kaizala.call_count == 2


def test_cache_seconds_is_capped_at_token_life(kaizala, monkeypatch, wall_clock) -> None:
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "99999")
    token = "opaque-token-without-exp"
    ValidateToken.main(request(token=token))
    wall_clock.now += 1799
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 1
    wall_clock.now += 2
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 2


def test_zero_disables_caching(kaizala, monkeypatch) -> None:
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "0")
    token = make_jwt()
    for _ in range(3):
        ValidateToken.main(request(token=token))
    assert kaizala.call_count == 3


def test_rejected_token_is_remembered_briefly(kaizala, wall_clock) -> None:
    kaizala.get(MOCK_URL, status_code=401)
    token = make_jwt()
    assert ValidateToken.main(request(token=token)).status_code == 401
    assert ValidateToken.main(request(token=token)).status_code == 401
    assert kaizala.call_count == 1
    wall_clock.now += 31
    assert ValidateToken.main(request(token=token)).status_code == 401
    assert kaizala.call_count == 2


def test_max_entries_bounds_the_cache(kaizala, monkeypatch) -> None:
    monkeypatch.setenv("TOKEN_CACHE_MAX_ENTRIES", "5")
    for _ in range(20):
        ValidateToken.main(request(token=make_jwt()))
    assert root().cache("kaizala").counts()["identities"] == 5
    kaizala.get(MOCK_URL, status_code=401)
    for _ in range(20):
        ValidateToken.main(request(token=make_jwt()))
    assert root().cache("kaizala").counts()["rejections"] == 5
    assert root().cache("kaizala").counts()["identities"] == 5  # junk tokens did not push real users out


def test_clear_cache_forgets_everything(kaizala) -> None:
    token = make_jwt()
    ValidateToken.main(request(token=token))
    root().clear()
    ValidateToken.main(request(token=token))
    assert kaizala.call_count == 2


def test_refresh_ahead_answers_from_cache_and_refreshes_in_background() -> None:
    clock = Clock()
    cache = new_cache(timer=clock)
    calls, fetch = scripted([IDENTITY] * 3)

    assert lookup(cache, fetch, seconds=100)[1] == "miss"
    clock.now += 50
    assert lookup(cache, fetch, seconds=100)[1] == "hit"
    assert len(calls) == 1  # not yet in the last 20%
    clock.now += 35
    identity, source = lookup(cache, fetch, seconds=100)
    assert (identity, source) == (IDENTITY, "hit")
    _wait_until(lambda: len(calls) == 2 and cache.admission.busy == 0)
    clock.now += 70  # past the first entry's life, before the new one's refresh window: the refreshed entry answers
    assert lookup(cache, fetch, seconds=100)[1] == "hit"
    assert len(calls) == 2


def test_refresh_ahead_off_means_a_miss_at_expiry() -> None:
    clock = Clock()
    cache = new_cache(timer=clock)
    calls, fetch = scripted([IDENTITY] * 3)

    lookup(cache, fetch, seconds=100, refresh_ahead=False)
    clock.now += 90
    lookup(cache, fetch, seconds=100, refresh_ahead=False)
    assert len(calls) == 1
    clock.now += 11
    assert lookup(cache, fetch, seconds=100, refresh_ahead=False)[1] == "miss"


def test_refresh_never_extends_past_exp() -> None:
    clock = Clock()
    cache = new_cache(timer=clock)
    calls, fetch = scripted([IDENTITY] * 3)

    lookup(cache, fetch, seconds=100, not_after=lambda: clock.now + 50)
    clock.now += 45
    lookup(cache, fetch, seconds=100)
    time.sleep(0.05)
    assert len(calls) == 1  # refreshing could not extend the entry, so none was started


def test_failed_refresh_is_not_retried_and_the_entry_expires_on_its_own() -> None:
    clock = Clock()
    cache = new_cache(timer=clock)
    calls, fetch = scripted([IDENTITY, IdentityUnavailable(), IDENTITY])
    lookup(cache, fetch, seconds=100)
    clock.now += 85
    assert lookup(cache, fetch, seconds=100)[1] == "hit"  # starts a refresh, which fails upstream
    _wait_until(lambda: cache.admission.busy == 0)
    clock.now += 5
    assert lookup(cache, fetch, seconds=100)[1] == "hit"  # still cached, and no second refresh
    time.sleep(0.05)
    assert len(calls) == 2
    clock.now += 11  # past the entry's own life
    assert lookup(cache, fetch, seconds=100)[1] == "miss"
    assert len(calls) == 3


def test_refresh_rejected_by_kaizala_drops_the_entry_at_once() -> None:
    clock = Clock()
    cache = new_cache(timer=clock)
    _calls, fetch = scripted([IDENTITY, InvalidToken()])
    lookup(cache, fetch, seconds=100)
    clock.now += 85
    assert lookup(cache, fetch, seconds=100)[1] == "hit"
    _wait_until(lambda: cache.admission.busy == 0)
    with pytest.raises(InvalidToken):
        lookup(cache, fetch, seconds=100)


def _wait_until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_lowering_token_cache_seconds_applies_to_entries_already_cached() -> None:
    clock = Clock()
    cache = new_cache(timer=clock)
    calls, fetch = scripted([IDENTITY] * 3)
    lookup(cache, fetch, seconds=1800)
    clock.now += 120
    assert lookup(cache, fetch, seconds=1800)[1] == "hit"
    assert lookup(cache, fetch, seconds=60)[1] == "miss"  # stored 120 s ago: too old under the new setting
    assert lookup(cache, fetch, seconds=0)[1] == "miss"  # 0 disables caching, at once
    assert len(calls) == 3
