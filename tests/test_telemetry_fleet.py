"""Telemetry of the fleet cache through the functions, against a real redis-server that is then killed: a span and a
duration per Redis round trip (named by operation), the fleet's availability as a gauge, and its state change."""

from collections.abc import Iterator

import pytest

from shared import telemetry
from shared.telemetry import names
from tests.helpers import Reply, Upstream, identity_payload, make_jwt, upstream_server
from tests.otlp_collector import Collector
from tests.redis_server import SECRET, RedisServer, require_redis
from tests.telemetry_helpers import HOST_SPAN, TRACE_ID, flush, validate

require_redis()

pytestmark = [pytest.mark.redis]


@pytest.fixture
def kaizala_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload("fleet-user-0a1b"))) as upstream:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", upstream.url)
        yield upstream


@pytest.fixture
def redis_on(monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer) -> Iterator[RedisServer]:
    monkeypatch.setenv("TOKEN_CACHE_REDIS_URL", own_redis.url)
    monkeypatch.setenv("TOKEN_CACHE_REDIS_SECRET", SECRET.decode())
    yield own_redis
    monkeypatch.delenv("TOKEN_CACHE_REDIS_URL")
    validate()  # the next request closes this test's Redis connection


def test_redis_round_trips_then_redis_down(otlp: Collector, kaizala_up: Upstream, redis_on: RedisServer) -> None:
    first = make_jwt()
    assert validate(first).status_code == 200  # a miss: lookup, lease, store
    flush(otlp)
    got = otlp.received
    assert got.total(names.FLEET_AVAILABLE) == 1
    operations = {point.attributes[names.OPERATION] for point in got.latest(names.FLEET_DURATION).values()}
    assert {"lookup", "try_lead"} <= operations
    assert got.total(names.FLEET_DURATION, operation="lookup", outcome="ok") == 1
    lookup = [span for span in got.spans if span.name == "redis lookup"]
    assert [(span.trace_id, span.parent_span_id) for span in lookup] == [(TRACE_ID, HOST_SPAN)]

    redis_on.kill()
    for _ in range(3):
        assert validate(make_jwt()).status_code == 200  # Redis down fails no request
    flush(otlp)
    assert got.total(names.FLEET_AVAILABLE) == 0
    assert got.total(names.FLEET_STATE_CHANGES, state="unavailable", cause="refused") == 1
    assert got.total(names.FLEET_DURATION, outcome="connection") == 3  # then the breaker skips Redis
    assert got.total(names.REQUESTS, provider="kaizala", outcome="ok", source="upstream") == 4
    failed = [span for span in got.spans if span.name.startswith("redis ") and span.attributes["outcome"] != "ok"]
    assert len(failed) == 3
    assert all(span.status == 2 for span in failed)


def test_the_fleet_recovering_is_a_state_change(otlp: Collector) -> None:
    from shared.fleet.health import Cause, Health

    health = Health("127.0.0.1:1", reports=True)
    health.failed(Cause("timeout", "timed out"), opened=True, open_seconds=1.0, failures=3)
    health.failed(Cause("timeout", "timed out"), opened=False, open_seconds=1.0, failures=3)  # no new change
    health.succeeded(writes=False)
    health.succeeded(writes=False)  # no new change
    flush(otlp)
    got = otlp.received
    assert got.total(names.FLEET_STATE_CHANGES, state="unavailable", cause="timeout") == 1
    assert got.total(names.FLEET_STATE_CHANGES, state="available", cause="recovered") == 1
    telemetry.force_flush()
