"""Telemetry through the functions, exported over OTLP/HTTP to a real collector on 127.0.0.1 (tests/otlp_collector.py,
decoded with opentelemetry-proto): the counts of real requests (a hit, a miss, a rejection, a 429, shed requests,
Teams), spans that are children of the host's trace parent, log records correlated with it, and no personal data
anywhere in what was exported."""

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ProtectedApi
import shared
import ValidateToken
from shared import telemetry
from shared.telemetry import names
from tests.entra import USER, Entra
from tests.helpers import (
    SECRETS,
    Reply,
    Upstream,
    identity_payload,
    json_of,
    make_jwt,
    request,
    upstream_server,
    wait_for,
)
from tests.otlp_collector import Collector
from tests.telemetry_helpers import HOST_SPAN, TRACE_ID, HostContext, flush, validate

ROOT = Path(__file__).resolve().parent.parent
USER_ID = "kz-user-5e1f0c"
USER_NAME = "Priya Kulkarni-Ostrowski"
PHONE = "+15557654321"


@pytest.fixture
def kaizala_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """users/me on 127.0.0.1: a token ending "-reject" 401, "-throttle" 429, "-fail" 503, "-slow" the test user after
    1.2 s, any other the test user."""

    def script(_number: int, token: str | None) -> Reply:
        if token and token.endswith("-reject"):
            return Reply(401, {"error": "invalid"})
        if token and token.endswith("-throttle"):
            return Reply(429, {"error": "slow down"}, headers={"Retry-After": "30"})
        if token and token.endswith("-fail"):
            return Reply(503, {"error": "down"})
        if token and token.endswith("-slow"):
            return Reply(body=identity_payload(USER_ID, phone=PHONE), delay=1.2)
        return Reply(body={**identity_payload(USER_ID, phone=PHONE), "name": USER_NAME})

    with upstream_server(script) as upstream:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", upstream.url)
        yield upstream


def token(suffix: str = "") -> str:
    value = make_jwt()
    return value if not suffix else _secret(value + suffix)


def _secret(value: str) -> str:
    SECRETS.add(value)
    return value


def test_the_counts_of_real_requests_match_what_was_sent(otlp: Collector, kaizala_upstream: Upstream) -> None:
    good = token()
    assert validate(good).status_code == 200  # a miss: one call to Kaizala
    assert validate(good).status_code == 200  # a hit
    assert validate(good).status_code == 200  # a hit
    assert validate(token("-reject")).status_code == 401  # Kaizala rejects it
    assert validate(token("-throttle")).status_code == 503  # Kaizala's 429
    assert validate(token()).status_code == 503  # shed: the 429 holds, no call
    assert validate(token()).status_code == 503  # shed again
    assert validate().status_code == 401  # no token at all
    assert kaizala_upstream.count == 3
    flush(otlp)
    got = otlp.received
    assert got.total(names.REQUESTS) == 8
    assert got.total(names.REQUESTS, provider="kaizala", outcome="ok", source="upstream") == 1
    assert got.total(names.REQUESTS, provider="kaizala", outcome="ok", source="hit") == 2
    assert got.total(names.REQUESTS, provider="kaizala", outcome="invalid_token", source="upstream") == 1
    assert got.total(names.REQUESTS, provider="kaizala", outcome="identity_unavailable", source="upstream") == 1
    assert got.total(names.REQUESTS, provider="kaizala", outcome="identity_unavailable", source="hit") == 2
    assert got.total(names.REQUESTS, provider="none", outcome="missing_token", source="none") == 1
    assert got.total(names.SHED) == 2
    assert got.total(names.SHED, reason="throttled") == 2
    assert got.total(names.UPSTREAM_DURATION) == 3
    for outcome in ("ok", "rejected", "throttled"):
        assert got.total(names.UPSTREAM_DURATION, provider="kaizala", outcome=outcome) == 1
    assert got.total(names.UPSTREAM_ACTIVE, provider="kaizala") == 0  # every call ended
    spans = got.spans_named(names.SPAN_KAIZALA)
    assert sorted(span.attributes[names.OUTCOME] for span in spans) == ["ok", "rejected", "throttled"]
    assert sorted(span.attributes[names.STATUS_CODE] for span in spans) == [200, 401, 429]


def test_upstream_spans_are_children_of_the_hosts_trace_parent(otlp: Collector, kaizala_upstream: Upstream) -> None:
    assert validate(token(), context=HostContext()).status_code == 200
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    assert validate(token(), context=HostContext(f"00-{other_trace}-b7ad6b7169203331-01")).status_code == 200
    assert telemetry.force_flush(5.0)
    spans = {span.trace_id: span for span in otlp.received.spans_named(names.SPAN_KAIZALA)}
    assert spans[TRACE_ID].parent_span_id == HOST_SPAN
    assert spans[other_trace].parent_span_id == "b7ad6b7169203331"
    assert spans[TRACE_ID].kind == 3  # CLIENT


def test_without_a_trace_parent_the_spans_start_their_own_trace(otlp: Collector, kaizala_upstream: Upstream) -> None:
    assert ValidateToken.main(request(token=token())).status_code == 200  # no host: NO_HOST's empty trace parent
    assert telemetry.force_flush(5.0)
    (span,) = otlp.received.spans_named(names.SPAN_KAIZALA)
    assert span.parent_span_id == ""
    assert span.trace_id != TRACE_ID


def test_log_records_are_exported_and_filed_under_the_invocation(otlp: Collector, kaizala_upstream: Upstream) -> None:
    assert validate(token()).status_code == 200
    assert validate(token("-reject")).status_code == 401
    assert telemetry.force_flush(5.0)
    logs = list(otlp.received.logs)
    checked = [line for line in logs if line.body.startswith("token checked with kaizala")]
    refused = [line for line in logs if line.body.startswith("token refused: invalid_token")]
    assert checked
    assert refused
    for line in checked + refused:
        assert line.trace_id == TRACE_ID  # the request thread's records: filed under the host's invocation


def test_a_request_behind_a_hanging_call_is_shed_as_unhealthy(
    otlp: Collector, kaizala_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot, held by a call far slower than calls take: the next miss leaves the line, shed, without a call."""
    monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", "1")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(validate, token("-slow"))
        assert wait_for(lambda: kaizala_upstream.active == 1, 5)
        assert validate(token()).status_code == 503
        assert first.result().status_code == 200
    flush(otlp)
    got = otlp.received
    assert got.total(names.SHED) == 1
    assert got.total(names.SHED, reason="unhealthy") == 1
    assert got.total(names.REQUESTS, provider="kaizala", outcome="identity_unavailable", source="none") == 1
    assert got.total(names.REQUESTS, provider="kaizala", outcome="ok", source="upstream") == 1
    assert kaizala_upstream.count == 1


def test_a_failing_upstream_is_timed_by_outcome(otlp: Collector, kaizala_upstream: Upstream) -> None:
    assert validate(token("-fail")).status_code == 503
    flush(otlp)
    got = otlp.received
    assert got.total(names.UPSTREAM_DURATION, provider="kaizala", outcome="unavailable") == 1
    assert got.total(names.REQUESTS, provider="kaizala", outcome="identity_unavailable", source="upstream") == 1
    assert got.total(names.SHED) == 0
    (span,) = got.spans_named(names.SPAN_KAIZALA)
    assert span.status == 2  # ERROR
    assert span.status_message == "unavailable"


@pytest.mark.usefixtures("teams_on")
def test_teams_requests_and_entras_key_fetches(otlp: Collector, entra: Entra, kaizala) -> None:
    teams = entra.token()
    assert validate(teams).status_code == 200
    assert validate(teams).status_code == 200
    assert ProtectedApi.main(request(function="ProtectedApi", token=teams), context=HostContext()).status_code == 200
    flush(otlp)
    got = otlp.received
    assert got.total(names.REQUESTS, provider="teams", outcome="ok", source="upstream") == 1
    assert got.total(names.REQUESTS, provider="teams", outcome="ok", source="hit") == 2
    assert got.total(names.SIGNING_KEY_FETCHES, outcome="ok") == 1
    assert got.total(names.UPSTREAM_DURATION, provider="teams", outcome="ok") == 1
    (span,) = got.spans_named(names.SPAN_ENTRA_KEYS)
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, HOST_SPAN)


@pytest.mark.usefixtures("teams_on")
def test_nothing_exported_names_a_token_its_hash_or_the_user(
    otlp: Collector, kaizala_upstream: Upstream, entra: Entra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZALA_BLOCKED_USER_IDS", "kz-blocked-77aa")
    kaizala_token, rejected, teams = token(), token("-reject"), entra.token()
    for each in (kaizala_token, kaizala_token, rejected, teams, teams):
        validate(each)
    assert validate(token("-throttle")).status_code == 503
    ProtectedApi.main(request(function="ProtectedApi", token=kaizala_token, params={"category": "coffee"}))
    assert telemetry.force_flush(5.0)
    texts = list(otlp.received.strings())
    assert texts
    claims = entra.claims()
    personal = {USER_ID, USER_NAME, PHONE, USER, claims["name"], claims["preferred_username"], "kz-blocked-77aa"}
    tokens = {kaizala_token, rejected, teams}
    needles = personal | tokens | {hashlib.sha256(t.encode()).hexdigest() for t in tokens} | set(SECRETS)
    needles |= {part for t in tokens for part in t.split(".") if len(part) >= 16}  # a token's parts, too
    found = [(needle, text) for text in texts for needle in needles if needle and needle in text]
    assert not found, found[:3]
    for span in otlp.received.spans:
        for key, value in span.attributes.items():
            allowed = VOCABULARY.get(key) or {value}
            assert isinstance(value, int) or value in allowed, (span.name, key, value)


VOCABULARY: dict[str, frozenset[str]] = {
    names.PROVIDER: names.PROVIDERS,
    names.OUTCOME: names.UPSTREAM_OUTCOMES | names.FLEET_OUTCOMES,
    names.SOURCE: names.SOURCES,
    names.REASON: names.SHED_REASONS,
    names.STATE: names.FLEET_STATES,
    names.OPERATION: frozenset(),  # a code name (checked below)
}


def test_every_exported_metric_attribute_is_a_vocabulary_word(otlp: Collector, kaizala_upstream: Upstream) -> None:
    for suffix in ("", "", "-reject", "-throttle", ""):
        validate(token(suffix))
    validate()
    flush(otlp)
    points = list(otlp.received.points)
    assert {point.metric for point in points} >= {names.REQUESTS, names.UPSTREAM_DURATION, names.SHED}
    request_outcomes = names.REQUEST_OUTCOMES
    for point in points:
        for key, value in point.attributes.items():
            if key == names.OPERATION:
                assert value.isidentifier(), (point.metric, key, value)
                continue
            allowed = request_outcomes if (point.metric, key) == (names.REQUESTS, names.OUTCOME) else VOCABULARY[key]
            assert value in allowed, (point.metric, key, value)


def test_telemetry_off_exports_nothing_and_imports_no_opentelemetry() -> None:
    """Run in a fresh interpreter: with no telemetry setting, a request loads nothing of OpenTelemetry."""
    code = (
        "import sys, ValidateToken\n"
        "from tests.helpers import request\n"
        "print(ValidateToken.main(request()).status_code)\n"
        "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules"
        " if m.startswith(('opentelemetry.', 'azure.monitor'))}))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "APPLICATIONINSIGHTS"))}
    env |= {"AUTH_PROVIDERS": "kaizala", "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "*"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=str(ROOT), timeout=60
    )
    assert result.stdout.split("\n")[:2] == ["401", "[]"], result.stdout + result.stderr


def test_without_a_setting_telemetry_is_off() -> None:
    telemetry.restart()
    assert telemetry.active() is telemetry.OFF
    assert validate().status_code == 401


def test_clear_cache_keeps_telemetry(otlp: Collector, kaizala_upstream: Upstream) -> None:
    validate(token())
    shared.clear_cache()
    assert telemetry.active().on


def test_a_request_through_protected_api_counts_once(otlp: Collector, kaizala_upstream: Upstream) -> None:
    good = token()
    answer = ProtectedApi.main(request(function="ProtectedApi", token=good, params={"category": "coffee"}))
    assert answer.status_code == 200, json_of(answer)
    flush(otlp)
    assert otlp.received.total(names.REQUESTS) == 1
