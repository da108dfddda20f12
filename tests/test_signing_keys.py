"""Entra's signing keys, kept per their lifetime (shared/signing_keys.py), over a real HTTP endpoint on 127.0.0.1,
with the cache's clock moved by hand."""

import time
from collections.abc import Iterator

import pytest

from shared.errors import IdentityBadResponse, IdentityUnavailable, InvalidToken
from shared.providers import signing_keys
from shared.providers.signing_keys import SigningKeys
from tests.entra import Entra
from tests.helpers import Reply, Upstream, upstream_server, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def entra() -> Entra:
    return Entra()


@pytest.fixture
def answers() -> list[Reply]:
    """What the endpoint answers next (the last one repeats); tests append to it."""
    return []


@pytest.fixture
def endpoint(entra: Entra, answers: list[Reply]) -> Iterator[Upstream]:
    def script(number: int, _token: str | None) -> Reply:
        if not answers:
            return Reply(body=entra.jwks(), headers={"Cache-Control": "private, max-age=3600"})
        return answers[min(number, len(answers)) - 1]

    with upstream_server(script) as up:
        yield up


def deadline() -> float:
    return time.monotonic() + 2


def test_a_set_lives_its_max_age_then_serves_stale_while_a_background_fetch_replaces_it(
    entra: Entra, endpoint: Upstream
) -> None:
    clock = Clock()
    keys = SigningKeys(clock=clock)
    kid = entra.current.kid
    assert keys.key(endpoint.url, kid, deadline()).key_id == kid
    clock.now += 3599
    keys.key(endpoint.url, kid, deadline())
    assert len(endpoint.calls) == 1  # still fresh
    clock.now += 2
    keys.key(endpoint.url, kid, deadline())  # past its life: answered at once, replaced in the background
    assert wait_for(lambda: len(endpoint.calls) == 2, 2)


def test_a_stale_set_keeps_serving_while_entra_is_down_then_runs_out(
    entra: Entra, endpoint: Upstream, answers: list[Reply]
) -> None:
    clock = Clock()
    keys = SigningKeys(clock=clock)
    kid = entra.current.kid
    keys.key(endpoint.url, kid, deadline())
    answers.extend([Reply(body=entra.jwks(), headers={"Cache-Control": "max-age=3600"}), Reply(status=503)])
    clock.now += 3600 + 10
    assert keys.key(endpoint.url, kid, deadline()).key_id == kid  # Entra down: the stale set still answers
    assert wait_for(lambda: len(endpoint.calls) >= 2, 2)
    clock.now += signing_keys.STALE_GRACE_SECONDS
    with pytest.raises(IdentityUnavailable):
        keys.key(endpoint.url, kid, deadline())


def test_without_keys_a_failed_fetch_is_not_retried_before_the_backoff(
    endpoint: Upstream, answers: list[Reply]
) -> None:
    answers.append(Reply(status=500))  # not retried by the client (503 would be, twice): one call per fetch
    clock = Clock()
    keys = SigningKeys(clock=clock)
    for _ in range(5):
        with pytest.raises(IdentityUnavailable) as refused:
            keys.key(endpoint.url, "kid", deadline())
    assert refused.value.retry_after >= 1
    assert len(endpoint.calls) == 1
    clock.now += signing_keys.FAILED_FETCH_BACKOFF_SECONDS
    with pytest.raises(IdentityUnavailable):
        keys.key(endpoint.url, "kid", deadline())
    assert len(endpoint.calls) == 2


@pytest.mark.parametrize(
    "answer",
    [
        Reply(body=b"not json"),
        Reply(body={"keys": "nope"}),
        Reply(body={"keys": []}),
        Reply(body={"keys": [{"kty": "EC", "kid": "x", "crv": "P-256", "x": "AA", "y": "AA"}]}),
        Reply(body={"keys": [{"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}]}),
        Reply(body=[1, 2, 3]),
        Reply(status=404, body={"error": "not found"}),
    ],
)
def test_an_unusable_key_document_is_a_bad_response(endpoint: Upstream, answers: list[Reply], answer: Reply) -> None:
    answers.append(answer)
    with pytest.raises(IdentityBadResponse):
        SigningKeys().key(endpoint.url, "x", deadline())


def test_an_unknown_kid_refetches_once_per_interval(entra: Entra, endpoint: Upstream) -> None:
    clock = Clock()
    keys = SigningKeys(clock=clock)
    keys.key(endpoint.url, entra.current.kid, deadline())
    for number in range(20):  # the set was fetched just now: nothing to gain from fetching it again
        with pytest.raises(InvalidToken):
            keys.key(endpoint.url, f"unknown-{number}", deadline())
    assert len(endpoint.calls) == 1
    clock.now += signing_keys.REFETCH_SECONDS
    for number in range(20):  # one refetch for the whole burst
        with pytest.raises(InvalidToken):
            keys.key(endpoint.url, f"unknown-again-{number}", deadline())
    assert len(endpoint.calls) == 2


def test_a_slow_endpoint_gives_up_at_the_deadline(entra: Entra) -> None:
    with upstream_server(lambda _n, _t: Reply(body=entra.jwks(), delay=2)) as slow:
        began = time.monotonic()
        with pytest.raises(IdentityUnavailable):
            SigningKeys().key(slow.url, entra.current.kid, time.monotonic() + 0.3)
        assert time.monotonic() - began < 1.2
