"""A bounded soak through `python -m devserver` while the Kaizala stand-in's faults switch on and off.

Many threads send many distinct tokens (valid, expired, forged, for a disallowed card); every answer is checked
against the documented status/error pairs and against the faults in force while it was in flight.
"""

import base64
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.devserver_process import DevServer

DISALLOWED_CARD = "com.fabrikam.notallowed"
TIMEOUT_SECONDS = 1.0  # KAIZALA_TIMEOUT_SECONDS for the soak (the whole validation): hangs outlast it
JOIN_SLACK_SECONDS = 0.25  # a call's last socket read may end a little after its deadline
CACHE_SECONDS = 3  # short, so entries are refreshed ahead and expire many times during the run
REFRESH_AFTER = 0.8 * CACHE_SECONDS  # shared.cache.REFRESH_AHEAD_FRACTION: refreshes start at 80% of a life
# The app's production defaults, but for the cache life; refresh-ahead on. The local host has no worker thread pool
# bounding concurrent requests (Azure's sizes the default cap), so the cap is sized to the soak's client threads.
ENV = {
    "KAIZALA_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "TOKEN_CACHE_SECONDS": str(CACHE_SECONDS),
    "TOKEN_REFRESH_AHEAD": "1",
    "KAIZALA_MAX_CONCURRENT_CALLS": "16",
}

# Each phase: the stand-in's faults, and what a request for a token Kaizala would accept may then answer
# besides its normal outcome (a cache hit still answers normally under any fault).
Phase = tuple[str, dict[str, Any], set[tuple[int, str]]]
# Kaizala was across the internet: every phase's upstream answers after at least 50 ms (80±30 ms), a phase that
# names its own latency excepted.
UPSTREAM_LATENCY: dict[str, Any] = {"latency_ms": 80, "jitter_ms": 30}
_PHASES: list[Phase] = [
    ("none", {}, set()),
    ("latency 200±100 ms", {"latency_ms": 200, "jitter_ms": 100}, set()),
    ("500 on 50%", {"error_rate": 0.5, "error_status": 500}, {(503, "identity_unavailable")}),
    ("503 on 60%", {"error_rate": 0.6, "error_status": 503}, {(503, "identity_unavailable")}),
    ("429 on 40%", {"error_rate": 0.4, "error_status": 429}, {(503, "identity_unavailable")}),
    ("malformed JSON on 40%", {"malformed_rate": 0.4}, {(502, "identity_bad_response")}),
    ("no id on 40%", {"missing_id_rate": 0.4}, {(502, "identity_bad_response")}),
    ("truncated body on 40%", {"truncate_rate": 0.4}, {(503, "identity_unavailable")}),
    ("dropped connection on 40%", {"drop_rate": 0.4}, {(503, "identity_unavailable")}),
    ("hang 2 s on 20%", {"hang_rate": 0.2, "hang_seconds": 2.0}, {(503, "identity_unavailable")}),
    (
        "everything at once",
        {
            "latency_ms": 60,
            "jitter_ms": 10,
            "error_rate": 0.15,
            "malformed_rate": 0.1,
            "truncate_rate": 0.1,
            "drop_rate": 0.1,
            "hang_rate": 0.05,
            "hang_seconds": 2.0,
        },
        {(503, "identity_unavailable"), (502, "identity_bad_response")},
    ),
    ("none (recovery)", {}, set()),
]
PHASES: list[Phase] = [(name, {**UPSTREAM_LATENCY, **faults}, allowed) for name, faults, allowed in _PHASES]


# Kaizala's 429 (the stand-in's carries Retry-After: 2) stops every miss for that long, so a 429 phase's answers
# may still come for a while after it ends.
LINGERING = {"429 on 40%": 2.5}


@dataclass
class Token:
    kind: str  # valid, expired, forged, disallowed, blocked (a user in KAIZALA_BLOCKED_USER_IDS)
    value: str
    user_id: str | None
    first_sent: float | None = None  # monotonic times of the first and last request that carried it
    last_sent: float | None = None
    sends: int = 0
    slow_503_starts: list[float] = field(default_factory=list)  # requests that outlived the deadline with a 503


@dataclass
class Result:
    phase_counts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    by_phase: Counter[tuple[str, int]] = field(default_factory=Counter)  # (phase a request began in, status)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (monotonic start, phase index)
    tokens: list[Token] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    requests: int = 0
    upstream_calls: int = 0
    failures_5xx: int = 0
    slow_503s: int = 0  # 503s while no fault was on, from requests that really outlived the deadline
    slow_503s_by_phase: Counter[str] = field(default_factory=Counter)  # by the phase the request began in
    joined_slow_503s: int = 0  # of slow_503s: fast ones from requests that joined a call outliving the deadline
    # Fast 503s without a fault in flight, judged after the run: (token, start, phase, what is wrong otherwise).
    unexplained: list[tuple[Token, float, str, str]] = field(default_factory=list)
    distinct_tokens: int = 0
    sequence_bound: float = 0.0  # upstream call sequences the cache may make for the tokens sent (see bound)
    recovered: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_token(server: DevServer, kind: str, user: str, rng: random.Random) -> Token:
    if kind in ("valid", "blocked"):
        return Token(kind, server.mint(userId=user), user)
    if kind == "disallowed":
        return Token("disallowed", server.mint(userId=user, actionPackageId=DISALLOWED_CARD), user)
    header, payload, _ = server.mint(userId=user).split(".")
    if kind == "forged":
        return Token("forged", f"{header}.{payload}.{_b64(rng.randbytes(32))}", None)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] = int(time.time()) - 3600  # expired an hour ago: refused before any upstream call
    return Token("expired", f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(rng.randbytes(32))}", None)


def normal_outcome(token: Token) -> set[tuple[int, str]]:
    return {
        "valid": {(200, "")},
        "expired": {(401, "invalid_token")},
        "forged": {(401, "invalid_token")},
        "disallowed": {(403, "forbidden")},
        "blocked": {(403, "forbidden")},
    }[token.kind]


KINDS = ("valid", "valid", "valid", "expired", "forged", "disallowed")


def run(
    server: DevServer,
    *,
    phase_seconds: float = 1.8,
    threads: int = 12,
    fresh_share: float = 0.25,
    phases: list[Phase] = PHASES,
    kinds: tuple[str, ...] = KINDS,
    blocked_user: str | None = None,
    on_phase: Callable[[int], None] | None = None,
) -> Result:
    """`fresh_share` of requests carry a token never seen before, so the cache misses while faults are on.

    Each client thread sends its requests round-robin over every function host instance (`server.apis`).
    `blocked_user` (in KAIZALA_BLOCKED_USER_IDS) gets the "blocked" tokens, and no other kind's. `on_phase(i)` runs
    as phase i begins, after its Kaizala faults are set (the fleet soak breaks Redis there)."""
    users = [user["id"] for user in requests.get(f"{server.kaizala}/v1/dev/users", timeout=5).json()["users"]]
    users = [user for user in users if user != blocked_user]
    apis = server.apis or [server.api]

    def user_for(kind: str, rng: random.Random) -> str:
        return blocked_user if kind == "blocked" and blocked_user else rng.choice(users)

    seed_rng = random.Random(0)
    tokens = [
        new_token(server, kind, blocked_user if kind == "blocked" and blocked_user else users[i % len(users)], seed_rng)
        for i, kind in enumerate(kinds * 5)
    ]
    result = Result(tokens=tokens)
    faults_url = f"{server.kaizala}/v1/dev/faults"
    requests.delete(faults_url, timeout=5)
    requests.delete(f"{server.kaizala}/v1/dev/stats", timeout=5)
    timeline = result.timeline
    lock = threading.Lock()
    stop = threading.Event()

    def phases_between(start: float, end: float) -> set[int]:
        indices = {index for began, index in timeline if began <= end}
        before = [index for began, index in timeline if began <= start]
        return {i for i in indices if not before or i >= before[-1]}

    def phase_end(index: int) -> float:
        later = [began for began, i in timeline if i == index + 1]
        return later[0] if later else float("inf")

    def client(seed: int) -> None:
        rng = random.Random(seed)
        sent = seed
        with requests.Session() as session:
            while not stop.is_set():
                if rng.random() < fresh_share:
                    kind = rng.choice(kinds)
                    token = new_token(server, kind, user_for(kind, rng), rng)
                    with lock:
                        tokens.append(token)
                else:
                    with lock:
                        token = rng.choice(tokens)
                started = time.monotonic()
                with lock:
                    token.first_sent = token.first_sent or started
                    token.last_sent = started
                    token.sends += 1
                sent += 1
                try:
                    response = session.get(
                        f"{apis[sent % len(apis)]}/api/ValidateToken",
                        headers={"Authorization": f"Bearer {token.value}"},
                        timeout=10,
                    )
                except requests.RequestException as exc:
                    with lock:
                        result.wrong.append(f"{token.kind}: no answer ({type(exc).__name__})")
                    continue
                check(token, response, started, time.monotonic(), apis[sent % len(apis)])

    def check(token: Token, response: requests.Response, started: float, ended: float, api: str) -> None:  # noqa: PLR0912 - one branch per kind of answer
        try:
            body = response.json()
        except ValueError:
            body = None
        code = body.get("error", "") if isinstance(body, dict) and response.status_code != 200 else ""
        outcome = (response.status_code, code)
        with lock:
            # A request may join (single flight) a call that began up to one deadline before it arrived, and gets
            # that call's outcome: the faults in force then count too.
            in_flight = phases_between(started - TIMEOUT_SECONDS - JOIN_SLACK_SECONDS, ended)
            for index in phases_between(started - max(LINGERING.values()), ended):
                if started - LINGERING.get(phases[index][0], 0) <= phase_end(index):
                    in_flight.add(index)
            began_in = phases[max(phases_between(started, started))][0]
        allowed = set(normal_outcome(token))
        for index in in_flight:
            allowed |= phases[index][2]
        problem = None
        # A healthy Kaizala can still be too slow for the deadline on a loaded machine: a 503 is then the right
        # answer. It is allowed only to a request that really outlived the deadline, so the verdict does not
        # depend on machine load, yet a 503 that came early (a request that waited on nothing) is still wrong.
        # The same holds for a request that joined (single flight) a call that then outlived the deadline: it gets
        # that call's 503, however late it joined. Such a fast 503 is judged after the run, when every request
        # for its token is known: it is right only if one for the same token began up to one deadline before it
        # and itself outlived the deadline with a 503 (that call's leader).
        slow = outcome == (503, "identity_unavailable") and ended - started >= TIMEOUT_SECONDS
        message = body.get("message") if isinstance(body, dict) else None
        wrong = (
            f"{token.kind}: {outcome} during {[phases[i][0] for i in sorted(in_flight)]} "
            f"after {ended - started:.2f} s from {api}: {message}"
        )
        if outcome not in allowed and slow:
            with lock:
                result.slow_503s += 1
                result.slow_503s_by_phase[began_in] += 1
                token.slow_503_starts.append(started)
        elif outcome not in allowed and outcome == (503, "identity_unavailable"):
            with lock:
                result.unexplained.append((token, started, began_in, wrong))
        elif outcome not in allowed:
            problem = wrong
        elif response.status_code == 200:
            if not isinstance(body, dict) or body.get("id") != token.user_id:
                problem = f"{token.kind}: 200 carried another identity"
            elif body.get("actionPackageId") == DISALLOWED_CARD:
                problem = "a disallowed card was accepted"
        elif not isinstance(body, dict) or set(body) != {"error", "message"}:
            problem = f"{token.kind}: error body is not the documented JSON"
        elif response.status_code == 503 and not response.headers.get("Retry-After", "").isdigit():
            problem = "503 without Retry-After"
        with lock:
            result.requests += 1
            result.outcomes[(token.kind, *outcome)] += 1
            result.by_phase[(began_in, response.status_code)] += 1
            result.failures_5xx += response.status_code >= 500
            if problem:
                result.wrong.append(problem)

    workers = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(threads)]
    for index, (name, faults, _) in enumerate(phases):
        if on_phase is not None:  # before this phase's Kaizala faults: whatever it takes happens in the last phase
            on_phase(index)
        # The phase begins before its faults change: a request in between counts under both (the one before by
        # the deadline's look-back), never under the old phase alone while the new faults are already on.
        with lock:
            timeline.append((time.monotonic(), index))
        requests.delete(faults_url, timeout=5)
        if faults:
            requests.put(faults_url, json=faults, timeout=5).raise_for_status()
        if index == 0:
            for worker in workers:
                worker.start()
        before = result.requests
        time.sleep(phase_seconds)
        result.phase_counts[name] = result.requests - before
    stop.set()
    for worker in workers:
        worker.join(15)
    for token, started, began_in, wrong in result.unexplained:
        if any(started - TIMEOUT_SECONDS - JOIN_SLACK_SECONDS <= leader <= started for leader in token.slow_503_starts):
            result.slow_503s += 1
            result.joined_slow_503s += 1
            result.slow_503s_by_phase[began_in] += 1
        else:
            result.wrong.append(wrong)

    # Faults are off: a fresh valid token, and one seen during the faults, must both succeed at once (everywhere).
    (fresh,) = [server.mint()]
    seen = next(token for token in tokens if token.kind == "valid")
    result.recovered = all(
        requests.get(f"{api}/api/ValidateToken", headers={"Authorization": f"Bearer {value}"}, timeout=5).status_code
        == 200
        for api in apis
        for value in (fresh, seen.value)
    )
    result.distinct_tokens = len(tokens) + 1
    result.sequence_bound = 1 + sum(sequences(token) for token in tokens)
    stats = requests.get(f"{server.kaizala}/v1/dev/stats", timeout=5).json()
    result.upstream_calls = int(stats.get("users_me", 0))
    return result


def sequences(token: Token) -> float:
    """Upstream call sequences the cache may make for one token: none for an expired one (refused locally); else,
    per REFRESH_AFTER of the time it was in use, one that stores an entry and one background refresh that fails
    (after which the entry expires and the next request starts again)."""
    if token.kind == "expired" or token.first_sent is None or token.last_sent is None:
        return 0
    return 2 * (1 + (token.last_sent - token.first_sent) / REFRESH_AFTER)


def upstream_bound(result: Result) -> int:
    """The cache's bound on upstream calls: each sequence above, and each failed one answered as a 5xx to at least
    one client, is at most 3 attempts (one call and two retries)."""
    return int(3 * (result.sequence_bound + result.failures_5xx))


def table(
    result: Result, phases: list[Phase] = PHASES, extra: list[tuple[str, str]] | None = None, fault: str = "fault"
) -> str:
    """The table in docs/reliability.md; `extra` rows go before the last one (wrong answers); `fault` names the
    stand-in's."""
    faults_injected = sum(result.phase_counts[name] for name, faults, _ in phases if faults)
    rows = [
        ("requests sent", f"{result.requests:,}"),
        (
            "distinct tokens (valid, expired, forged, disallowed card"
            + (", blocked user)" if any(token.kind == "blocked" for token in result.tokens) else ")"),
            str(result.distinct_tokens),
        ),
        (f"{fault} phases", f"{sum(1 for _, f, _ in phases if f)} ({', '.join(n for n, f, _ in phases if f)})"),
        (f"requests sent while a {fault} was on", f"{faults_injected:,}"),
        (
            "answers 200 / 401 / 403",
            " / ".join(
                str(sum(n for (kind, status, _), n in result.outcomes.items() if status == s)) for s in (200, 401, 403)
            ),
        ),
        (
            "answers 502 / 503 (documented, during faults)",
            " / ".join(
                str(sum(n for (kind, status, _), n in result.outcomes.items() if status == s)) for s in (502, 503)
            ),
        ),
        (
            "expired, forged or disallowed tokens accepted",
            str(sum(n for (kind, status, _), n in result.outcomes.items() if kind != "valid" and status == 200)),
        ),
        (
            "503s without a fault, from requests that outlived the deadline (of which joined a call that did)",
            f"{result.slow_503s} ({result.joined_slow_503s})",
        ),
        (
            "upstream calls (bound: 3 x (call sequences the cache allows + 5xx answers))",
            f"{result.upstream_calls:,} ≤ {upstream_bound(result):,}",
        ),
        ("first requests after faults stop succeeded", "yes" if result.recovered else "NO"),
        *(extra or []),
        ("wrong answers", str(len(result.wrong))),
    ]
    lines = ["| soak | figure |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)
