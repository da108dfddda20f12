"""The fleet soak: `python -m devserver --instances 3` sharing one stand-in and one test-started redis-server, while
Kaizala's faults and Redis's (SIGKILL, restart with empty memory, CLIENT PAUSE, FLUSHALL) switch on and off.

It reuses tests/soak.py (client threads, tokens, the check of every answer against the faults in force, the table),
with requests spread round-robin over the instances and a user blocked by KAIZALA_BLOCKED_USER_IDS. On top:
- Redis faults alone allow nothing but the normal answers (and, like soak.py, a 503 only from a request that really
  outlived the deadline): Redis failing never fails a request.
- The fleet's bound on upstream calls: the one-cache bound of soak.py for every token, plus, over the time Redis
  was failing and its circuit breakers may still skip it, every instance caching on its own (see fleet_bound).
- After Redis is back, shared caching is back: a fresh token checked on one instance is a fleet hit on every other
  (no further users/me call), for each instance in turn.
- At the end, nothing in Redis (keys, values, sets) holds a token, user id, name, phone number or card id.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests

from shared.fleet.cache import OPEN_SECONDS
from tests import soak
from tests.devserver_process import DevServer, devserver
from tests.redis_server import RedisServer

INSTANCES = 3
DEMO_USERS = Path(__file__).resolve().parent.parent / "devserver" / "demo_users.json"
BLOCKED_USER = "a1b2c3d4-0003-4000-8000-000000000003"  # a demo user, in KAIZALA_BLOCKED_USER_IDS
LOCAL_SECONDS = 1  # TOKEN_CACHE_LOCAL_SECONDS: local copies re-read Redis every second
BREAKER_OPEN_SECONDS = OPEN_SECONDS  # after a few failures an instance skips Redis this long, then probes
REDIS_TIMEOUT_MS = 100  # TOKEN_CACHE_REDIS_TIMEOUT_MS, the default
ENV = {
    **soak.ENV,
    "TOKEN_CACHE_LOCAL_SECONDS": str(LOCAL_SECONDS),
    "TOKEN_CACHE_REDIS_TIMEOUT_MS": str(REDIS_TIMEOUT_MS),
    "TOKEN_CACHE_REDIS_SECRET": "fleet-soak-deployment-secret-0123456789",
    "KAIZALA_BLOCKED_USER_IDS": BLOCKED_USER,
}
KINDS = ("valid", "valid", "valid", "expired", "forged", "disallowed", "blocked")
NONE: set[tuple[int, str]] = set()
UNAVAILABLE = {(503, "identity_unavailable")}
BAD_RESPONSE = {(502, "identity_bad_response")}

# (name, Kaizala faults, answers they allow besides the normal ones, what happens to Redis as the phase begins)
PLAN: list[tuple[str, dict[str, Any], set[tuple[int, str]], str]] = [
    ("none", {}, NONE, ""),
    ("latency 200±100 ms", {"latency_ms": 200, "jitter_ms": 100}, NONE, ""),
    ("500 on 50%", {"error_rate": 0.5, "error_status": 500}, UNAVAILABLE, ""),
    ("Redis killed (SIGKILL)", {}, NONE, "kill"),
    ("Redis down + Kaizala 503 on 60%", {"error_rate": 0.6, "error_status": 503}, UNAVAILABLE, ""),
    ("Redis restarted, empty", {}, NONE, "restart"),
    ("429 on 40%", {"error_rate": 0.4, "error_status": 429}, UNAVAILABLE, ""),
    ("Redis paused (CLIENT PAUSE 1.5 s)", {}, NONE, "pause"),
    ("Redis flushed every 0.3 s", {}, NONE, "flush"),
    ("Redis paused + malformed JSON on 40%", {"malformed_rate": 0.4}, BAD_RESPONSE, "pause"),
    ("Redis killed, restarted 0.9 s later", {}, NONE, "kill+restart"),
    ("hang 2 s on 20%", {"hang_rate": 0.2, "hang_seconds": 2.0}, UNAVAILABLE, ""),
    ("none (steady)", {}, NONE, ""),
    ("none (recovery)", {}, NONE, ""),
]
PHASES: list[soak.Phase] = [(name, {**soak.UPSTREAM_LATENCY, **faults}, allowed) for name, faults, allowed, _ in PLAN]
REDIS_FAULTS = [name for name, _, _, action in PLAN if action]
REDIS_ONLY = [name for name, faults, _, action in PLAN if action and not faults]
PHASE_SECONDS = 1.8


class RedisFaults:
    """Breaks the test's redis-server as each phase begins (`on_phase`). A fault lasts until a phase begins with
    Redis running again; `windows` records each one as (monotonic start, end)."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.windows: list[tuple[float, float]] = []
        self._since: float | None = None
        self._stop_repeating = threading.Event()
        self._repeating: threading.Thread | None = None

    def __call__(self, index: int) -> None:
        self._stop_repeating.set()
        if self._repeating is not None:
            self._repeating.join(15)
        self._stop_repeating = threading.Event()
        action = PLAN[index][3]
        if action == "restart":
            self.redis.start()
        self._close()
        began = time.monotonic()
        if action == "kill":
            self.redis.kill()
        elif action == "pause":
            self.redis.pause(1.5)
        elif action == "flush":
            self._repeat(lambda: self.redis.client().flushall(), every=0.3)
        elif action == "kill+restart":
            self.redis.kill()
            self._later(self.redis.start, after=0.9)
        if action and action != "restart" and self._since is None:
            self._since = began

    def finish(self) -> None:
        self._stop_repeating.set()
        if self._repeating is not None:
            self._repeating.join(15)
        if self.redis.process is None:
            self.redis.start()
        self._close()

    def _close(self) -> None:
        if self._since is not None and self.redis.process is not None:
            self.windows.append((self._since, time.monotonic()))
            self._since = None

    def _repeat(self, action: Callable[[], Any], *, every: float) -> None:
        """`action` every `every` seconds until the next phase begins."""
        stop = self._stop_repeating

        def loop() -> None:
            while not stop.wait(every):
                action()

        self._repeating = threading.Thread(target=loop, daemon=True)
        self._repeating.start()

    def _later(self, action: Callable[[], Any], *, after: float) -> None:
        """`action` once, `after` seconds from now, whenever the next phase begins (it waits for it)."""

        def run() -> None:
            time.sleep(after)
            action()

        self._repeating = threading.Thread(target=run, daemon=True)
        self._repeating.start()


@dataclass
class FleetResult:
    soak: soak.Result
    redis_faults: list[tuple[float, float]]
    fleet_bound: int = 0
    shared_again: list[int] = field(default_factory=list)  # per instance: users/me calls for a token checked on it
    # and then on every other instance (1 = fleet hits everywhere)
    shared_again_seconds: float = 0.0
    redis_keys: int = 0
    leaks: list[str] = field(default_factory=list)
    slow_503s_redis_only: int = 0
    redis_warnings: int = 0


class Dumps(Protocol):
    def dump(self) -> dict[bytes, list[bytes]]: ...


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


@contextmanager
def fleet(redis: HasUrl) -> Iterator[DevServer]:
    """The instances, on `redis` (a server, or a cluster named by one of its nodes)."""
    args = ["--instances", str(INSTANCES), "--redis-url", redis.url, "--no-access-log"]
    with devserver(*args, env=ENV, startup=120) as server:
        yield server


def run(server: DevServer, redis: RedisServer, everything: Dumps | None = None) -> FleetResult:
    """`redis`: the server the faults hit (on a cluster, one of its nodes); `everything`: what holds every key at
    the end (the cluster; by default `redis` itself)."""
    faults = RedisFaults(redis)
    try:
        result = soak.run(
            server, phases=PHASES, kinds=KINDS, blocked_user=BLOCKED_USER, on_phase=faults, phase_seconds=PHASE_SECONDS
        )
    finally:
        faults.finish()
    fleet_result = FleetResult(result, faults.windows)
    fleet_result.fleet_bound = fleet_bound(result, faults.windows)
    fleet_result.slow_503s_redis_only = sum(result.slow_503s_by_phase[phase] for phase in REDIS_ONLY)
    prove_sharing_is_back(server, fleet_result)
    fleet_result.redis_keys, fleet_result.leaks = secrets_in(everything or redis, result)
    fleet_result.redis_warnings = len(redis_warnings(server.output()))
    return fleet_result


def fleet_bound(result: soak.Result, redis_faults: list[tuple[float, float]]) -> int:
    """The fleet's bound on upstream calls: soak.py's one-cache bound for every token, plus, while Redis failed and
    for as long as a breaker may then still skip it, every instance that got the token acting as a cache of its own
    whose copies live TOKEN_CACHE_LOCAL_SECONDS (the bound on how stale an instance cut off from Redis may be): per
    instance, a sequence at the start and one per local life (and a failed one after each), at most 3 attempts
    each."""
    windows: list[tuple[float, float]] = []
    for start, end in sorted((start, end + BREAKER_OPEN_SECONDS + 1.0) for start, end in redis_faults):
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    extra = 0.0
    for token in result.tokens:
        if token.kind == "expired" or token.first_sent is None or token.last_sent is None:
            continue
        instances = min(INSTANCES, token.sends)
        for start, end in windows:
            overlap = min(end, token.last_sent) - max(start, token.first_sent)
            if overlap >= 0:
                extra += instances * 2 * (1 + overlap / LOCAL_SECONDS)
    return int(3 * (result.sequence_bound + extra + result.failures_5xx))


def redis_warnings(output: str) -> list[str]:
    """The instances' WARNINGs about Redis (shared.fleet.breaker: one when it is skipped, one when it answers again)."""
    return [line for line in output.splitlines() if "WARNING" in line and "token cache Redis" in line]


def users_me_calls(server: DevServer) -> int:
    return int(requests.get(f"{server.kaizala}/v1/dev/stats", timeout=5).json().get("users_me", 0))


def prove_sharing_is_back(server: DevServer, result: FleetResult, patience: float = 30.0) -> None:
    """For each instance in turn: a fresh token checked there, then on every other instance, costs one users/me call
    (the others are fleet hits). An instance's breaker may still skip Redis for a while after it came back: each
    instance gets `patience` seconds (fresh tokens, one try every 0.2 s) before its last count is kept."""
    began = time.monotonic()
    for first in range(len(server.apis)):
        give_up = time.monotonic() + patience
        while True:
            token = server.mint()
            before = users_me_calls(server)
            order = server.apis[first:] + server.apis[:first]
            answers = [
                requests.get(f"{api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=10)
                for api in order
            ]
            calls = users_me_calls(server) - before
            ok = all(answer.status_code == 200 for answer in answers)
            if (ok and calls == 1) or time.monotonic() > give_up:
                result.shared_again.append(calls if ok else -1)
                break
            time.sleep(0.2)
    result.shared_again_seconds = time.monotonic() - began


def secrets_in(redis: Dumps, result: soak.Result) -> tuple[int, list[str]]:
    """How many keys Redis holds, and every secret found in any key, value or set member."""
    demo = json.loads(DEMO_USERS.read_text())
    needles: dict[str, str] = {}
    for user in demo["users"]:
        for name in ("id", "name", "phoneNumber"):
            needles[user[name]] = f"user {name}"
    needles[demo["actionPackageId"]] = "card id"
    needles[soak.DISALLOWED_CARD] = "card id"
    for token in result.tokens:
        needles[token.value] = "token"
        needles[token.value.rsplit(".", 1)[-1]] = "token signature"
    stored = redis.dump()
    leaks = []
    for key, values in stored.items():
        for blob in (key, *values):
            for needle, what in needles.items():
                if needle and needle.encode() in blob:
                    leaks.append(f"a {what} in Redis")
    return len(stored), sorted(set(leaks))


def table(result: FleetResult) -> str:
    shared = result.shared_again
    extra = [
        ("function host instances (sharing one stand-in and one Redis)", str(INSTANCES)),
        ("Redis fault phases", f"{len(REDIS_FAULTS)} ({', '.join(REDIS_FAULTS)})"),
        (
            "503s begun while only Redis failed (each outlived the deadline, or joined a call that did)",
            str(result.slow_503s_redis_only),
        ),
        ("Redis WARNINGs logged by the instances (one per change of state)", str(result.redis_warnings)),
        (
            "upstream calls (fleet bound: the one cache's above, plus every instance's own while Redis failed)",
            f"{result.soak.upstream_calls:,} ≤ {result.fleet_bound:,}",
        ),
        (
            "after Redis returned: users/me calls for a fresh token checked on each instance, then on the others",
            f"{' / '.join(map(str, shared))} (1: fleet hits on the others; "
            f"all shown within {result.shared_again_seconds:.1f} s)",
        ),
        (
            "Redis at the end: keys / tokens, user ids, names, phone numbers or card ids found",
            f"{result.redis_keys} / {len(result.leaks)}",
        ),
    ]
    return soak.table(result.soak, PHASES, extra, fault="Kaizala fault")
