"""The fleet figures of `make bench`: the in-process cache in front of Redis, side by side with the
in-process cache alone, against throwaway `redis-server`s (free loopback port, no persistence, stopped afterwards)
and the Kaizala stand-in.

F1-F3 run in this process: an "instance" is what one function-app instance holds, its own IdentityCache and (with
Redis) its own FleetCache, the same Redis and stand-in for all. F4 runs real host processes (`python -m devserver`)
over HTTP. Without the `redis-server` binary the figures are skipped, never failed. Entry point: `fleet_figures()`,
rows as (figure, measured, target, met).
"""

import gc
import importlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

import azure.functions as func
import requests

from devserver.launch import launched

from .upstream import mint, upstream_calls

SECRET = "bench-deployment-secret-0123456789abcdef"  # noqa: S105 - a throwaway Redis; >= 32 chars like the setting
TIMEOUT_SECONDS = 5.0  # the bench's KAIZALA_TIMEOUT_SECONDS
CACHE_SECONDS = 300.0
INSTANCES = 4


class FleetRow(NamedTuple):
    figure: str
    measured: str
    target: str
    met: bool


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


class Instance:
    """One function-app instance: its own in-process cache and, with `redis_url`, its own Redis connection."""

    def __init__(self, kaizala: str, redis_url: str | None = None, *, local_seconds: float = 30) -> None:
        from shared.cache.admission import Admission
        from shared.cache.entry import Lifetimes
        from shared.cache.identity_cache import IdentityCache
        from shared.fleet import FleetCache
        from shared.providers.kaizala import Kaizala, KaizalaClient

        self.fleet = FleetCache(redis_url, SECRET.encode()) if redis_url else None
        self.client = KaizalaClient()
        self.url = f"{kaizala}/v1/users/me"
        self.cache = IdentityCache(Kaizala(self.url, lambda: self.client), Admission(64))
        self.cache.share(self.fleet)
        self.cache.lifetimes = Lifetimes(
            seconds=CACHE_SECONDS, local_seconds=local_seconds if self.fleet else float("inf"), refresh_ahead=True
        )

    def get(self, token: str) -> str:
        """The answer's source ("hit", "fleet", "miss", "shared"); raises what the cache raises."""
        return self.cache.get(token, time.monotonic() + TIMEOUT_SECONDS)[1]

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.close()


@contextmanager
def fleet(kaizala: str, redis_url: str | None, count: int = INSTANCES, **options: float) -> Iterator[list[Instance]]:
    instances = [Instance(kaizala, redis_url, **options) for _ in range(count)]
    try:
        yield instances
    finally:
        for instance in instances:
            instance.close()


def _answered(instance: Instance, token: str) -> bool:
    try:
        instance.get(token)
    except Exception:  # noqa: BLE001 - counted as not answered
        return False
    return True


# --- F1 and F2: Kaizala calls ----------------------------------------------------------------------------------


def single_flight(kaizala: str, redis_url: str, on: str = "") -> FleetRow:
    say(f"fleet F1{on}: 4 instances, 64 concurrent requests for one fresh token, with and without Redis")
    calls: dict[bool, int] = {}
    answered: dict[bool, int] = {}
    for with_redis in (True, False):
        with fleet(kaizala, redis_url if with_redis else None) as instances:
            (token,) = mint(kaizala)
            upstream_calls(kaizala, reset=True)
            barrier = threading.Barrier(64)

            def at_once(
                n: int, instances: list[Instance] = instances, token: str = token, barrier: threading.Barrier = barrier
            ) -> bool:
                barrier.wait()
                return _answered(instances[n % INSTANCES], token)

            with ThreadPoolExecutor(64) as pool:
                answered[with_redis] = sum(pool.map(at_once, range(64)))
            calls[with_redis] = upstream_calls(kaizala)
    return FleetRow(
        f"F1 fleet single flight{on}: Kaizala calls, 4 instances, 64 concurrent requests, one fresh token",
        f"{calls[True]} with Redis vs {calls[False]} without ({answered[True]}/64 and {answered[False]}/64 answered)",
        "exactly 1 with Redis",
        calls[True] == 1 and answered[True] == 64 and answered[False] == 64,
    )


def hit_ratio(kaizala: str, redis_url: str, on: str = "") -> FleetRow:
    say(f"fleet F2{on}: 2,000 requests over 100 tokens round-robin over 4 instances, with and without Redis")
    calls: dict[bool, int] = {}
    answered: dict[bool, int] = {}
    for with_redis in (True, False):
        with fleet(kaizala, redis_url if with_redis else None) as instances:
            tokens = mint(kaizala, 100)
            upstream_calls(kaizala, reset=True)

            # Request i: token i mod 100 on instance (i + i div 100) mod 4, so every token reaches every instance.
            def one(i: int, instances: list[Instance] = instances, tokens: list[str] = tokens) -> bool:
                return _answered(instances[(i + i // 100) % INSTANCES], tokens[i % 100])

            with ThreadPoolExecutor(16) as pool:
                answered[with_redis] = sum(pool.map(one, range(2000)))
            calls[with_redis] = upstream_calls(kaizala)
    return FleetRow(
        f"F2 fleet hit ratio{on}: Kaizala calls, 2,000 requests over 100 tokens round-robin over 4 instances",
        f"{calls[True]} with Redis vs {calls[False]} without "
        f"({answered[True]}/2000 and {answered[False]}/2000 answered)",
        "100 with Redis",
        calls[True] == 100 and answered[True] == 2000 and answered[False] == 2000,
    )


# --- F3: the cost of a Redis hit ---------------------------------------------------------------------------------


@contextmanager
def app_settings(**settings: str) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(settings)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def redis_hit_cost(kaizala: str, redis_url: str, rounds: int = 1200, batch: int = 5) -> FleetRow:
    say("fleet F3: in-process miss served from Redis vs 401 floor + one Redis GET of it (interleaved, medians)")
    import redis

    import ValidateToken
    from shared.authenticator import root

    settings = {
        "AUTH_PROVIDERS": "kaizala",
        "KAIZALA_IDENTITY_URL": f"{kaizala}/v1/users/me",
        "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "com.contoso.productpicker",
        "KAIZALA_ALLOWED_USER_IDS": "",
        "TOKEN_CACHE_SECONDS": str(int(CACHE_SECONDS)),
        "TOKEN_REFRESH_AHEAD": "1",
        "TOKEN_CACHE_REDIS_URL": redis_url,
        "TOKEN_CACHE_REDIS_SECRET": SECRET,
        "TOKEN_CACHE_LOCAL_SECONDS": "30",
    }
    ping_client = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(redis_url, max_connections=4, timeout=1)
    )
    with app_settings(**settings):
        (token,) = mint(kaizala)

        def req(token: str | None) -> func.HttpRequest:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return func.HttpRequest("GET", "http://localhost/api/ValidateToken", headers=headers, body=b"")

        anonymous, carrying = req(None), req(token)
        upstream_calls(kaizala, reset=True)
        assert ValidateToken.main(carrying).status_code == 200  # Kaizala once; now in Redis and in memory
        # The round trip a Redis hit cannot avoid: one GET of the token's entry, through the app's own connection
        # pool, issued from the same thread; what a hit costs beyond floor + this is decryption and bookkeeping.
        fleet = root().fleet
        assert fleet is not None
        entry_key = fleet._entry_key(fleet._sealer.keys(token))
        ping_client.ping()

        floor: list[float] = []
        ping: list[float] = []
        served: list[float] = []
        cpu: list[float] = []  # the request thread's own CPU time (time.thread_time: waiting on the socket excluded)
        ping_cpu: list[float] = []  # the same for the GET alone (redis-py's client and the kernel's loopback)
        statuses: set[int] = set()
        clock = time.perf_counter
        thread_clock = time.thread_time
        gc.collect()
        gc.disable()  # as timeit does: a collection lands on whichever sample runs then
        try:
            for _ in range(rounds):  # interleaved, so load from elsewhere hits the three alike
                for _ in range(batch):
                    began = clock()
                    ValidateToken.main(anonymous)
                    floor.append(clock() - began)
                for _ in range(batch):
                    began, began_cpu = clock(), thread_clock()
                    fleet._client.redis.get(entry_key)
                    ping.append(clock() - began)
                    ping_cpu.append(thread_clock() - began_cpu)
                for _ in range(batch):
                    root().clear()  # untimed: the next request misses in process and reads Redis
                    began, began_cpu = clock(), thread_clock()
                    statuses.add(ValidateToken.main(carrying).status_code)
                    served.append(clock() - began)
                    cpu.append(thread_clock() - began_cpu)
        finally:
            gc.enable()
        calls = upstream_calls(kaizala)
        root().close()  # close this process's Redis connection (the settings change back)
    ping_client.close()
    f, p, s, c, pc = (statistics.median(values) * 1e6 for values in (floor, ping, served, cpu, ping_cpu))
    # A loopback round trip (~0.1 ms) is far below Azure's (~1 ms in a region): what the app adds is the CPU its
    # own thread spends on a Redis hit (derivation, decryption, bookkeeping), which does not grow with distance.
    return FleetRow(
        "F3 Redis hit: the request thread's CPU time (time.thread_time), beside wall time and the GET round trip",
        f"{c:.0f} µs CPU, of which the GET alone (redis-py and the kernel) {pc:.0f} µs; wall {s:.0f} µs = "
        f"{s / (f + p):.2f}x (401 floor {f:.1f} µs + GET {p:.0f} µs), medians of {rounds * batch}",
        "CPU ≤ 80 µs",
        c <= 80 and statuses == {200} and calls == 1,
    )


# --- F4: Redis down ---------------------------------------------------------------------------------------------

HOST_SETTINGS = {  # as the other HTTP figures run `python -m devserver`
    "AUTH_PROVIDERS": "kaizala",
    "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "com.contoso.productpicker",
    "KAIZALA_ALLOWED_USER_IDS": "",
    "KAIZALA_TIMEOUT_SECONDS": "5",
    "KAIZALA_MAX_CONCURRENT_CALLS": "64",
    "PRODUCTS_FILE": "",
    "TOKEN_CACHE_SECONDS": str(int(CACHE_SECONDS)),
    "TOKEN_CACHE_LOCAL_SECONDS": "1",  # local copies expire every second: cached users then consult Redis
}
BREAKER_OPEN = "skipping it, trying again"  # the WARNING when Redis is skipped (shared/fleet/health.py)


def _get(session: requests.Session, api: str, token: str) -> int:
    return session.get(f"{api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def redis_outage(redis_server: Callable[[], Any], seconds: float = 6.0, every: float = 0.003) -> FleetRow:
    """Three host processes side by side (no Redis; Redis up; Redis killed, breaker open), each with its own stand-in
    and 16 cached users, paced requests interleaved over the three so load from elsewhere hits them alike."""
    say(
        f"fleet F4: p99 over HTTP of cached users, TOKEN_CACHE_LOCAL_SECONDS=1: three hosts (no Redis, Redis up, "
        f"Redis down with its breaker open) interleaved, a request every {every * 1000:g} ms for {seconds:g} s"
    )
    phases = ("no Redis", "up", "down")
    args = ["--port", "0", "--kaizala-port", "0", "--latency-ms", "50", "--no-access-log"]
    with ExitStack() as stack:
        hosts = {}
        servers = {}
        for phase in phases:
            env = dict(HOST_SETTINGS)
            if phase != "no Redis":
                servers[phase] = stack.enter_context(redis_server())
                env |= {"TOKEN_CACHE_REDIS_URL": servers[phase].url, "TOKEN_CACHE_REDIS_SECRET": SECRET}
            hosts[phase] = stack.enter_context(launched("devserver", args, env))
        sessions = {phase: stack.enter_context(requests.Session()) for phase in phases}
        tokens = {phase: mint(hosts[phase].kaizala, 16) for phase in phases}
        for phase in phases:  # cached users: in memory (and in Redis) before the measurement
            for token in tokens[phase]:
                _get(sessions[phase], hosts[phase].api, token)
        servers["down"].kill()
        for fresh in mint(hosts["down"].kaizala, 20):  # misses consult Redis: a few failures open the breaker
            _get(sessions["down"], hosts["down"].api, fresh)
            if BREAKER_OPEN in hosts["down"].output():
                break
        else:
            raise RuntimeError("the Redis breaker did not open:\n" + hosts["down"].output()[-2000:])
        for phase in phases:
            upstream_calls(hosts[phase].kaizala, reset=True)
        latencies: dict[str, list[float]] = {phase: [] for phase in phases}
        failures = 0
        start = time.monotonic()
        for i in range(int(seconds / every)):  # when a slow answer makes us late, the next ones go at once
            delay = start + i * every - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            phase = phases[i % 3]
            began = time.perf_counter()
            failures += _get(sessions[phase], hosts[phase].api, tokens[phase][(i // 3) % 16]) != 200
            latencies[phase].append((time.perf_counter() - began) * 1000)
        took = time.monotonic() - start
        rate = {phase: upstream_calls(hosts[phase].kaizala) / took for phase in phases}
    high = {phase: p99(latencies[phase]) for phase in phases}
    ratio = high["down"] / high["no Redis"]
    return FleetRow(
        "F4 p99 of cached users over HTTP, Redis down (skipped) vs up vs no Redis",
        f"{high['down']:.1f} ms down vs {high['up']:.1f} ms up vs {high['no Redis']:.1f} ms without Redis "
        f"({ratio:.2f}x); Kaizala calls/s {rate['down']:.0f} / {rate['up']:.0f} / {rate['no Redis']:.0f}"
        + (f", {failures} non-200" if failures else ""),
        "down ≤ 1.5x no Redis",
        ratio <= 1.5 and failures == 0,
    )


# --- F5: a failover ----------------------------------------------------------------------------------------------


def failover(kaizala: str, server: Any, users: int = 40, seconds: float = 30.0) -> FleetRow:
    """U users active on I instances, then Redis restarts with its memory lost (a patching failover): the Kaizala
    calls in the next 30 s. Without sharing each instance would check each of its users again: up to U x I."""
    say(
        f"fleet F5: {users} users on {INSTANCES} instances, Redis restarted empty, Kaizala calls in {seconds:g} s after"
    )
    from shared.fleet.cache import OPEN_SECONDS

    with fleet(kaizala, server.url) as instances:
        tokens = mint(kaizala, users)
        for instance in instances:
            for token in tokens:
                _answered(instance, token)
        stop = threading.Event()
        failed = [0]

        def traffic(instance: Instance) -> None:
            while not stop.is_set():
                for token in tokens:
                    failed[0] += not _answered(instance, token)
                stop.wait(0.1)

        threads = [threading.Thread(target=traffic, args=(instance,)) for instance in instances]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            server.kill()
            time.sleep(3 * OPEN_SECONDS)  # every breaker opens
            upstream_calls(kaizala, reset=True)
            server.start()
            time.sleep(seconds)
            calls = upstream_calls(kaizala)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    return FleetRow(
        f"F5 failover: Kaizala calls in the {seconds:g} s after a Redis restart (memory lost), "
        f"{users} users on {INSTANCES} instances",
        f"{calls} (at most {users * INSTANCES} without sharing)" + (f", {failed[0]} not answered" if failed[0] else ""),
        f"≤ {users} (one per user)",
        calls <= users and failed[0] == 0,
    )


def fleet_figures() -> list[FleetRow]:
    """Every fleet figure, or one row saying they were skipped (no `redis-server` binary)."""
    # The tests' throwaway redis-server (free loopback port, no persistence, stopped afterwards); imported by name
    # because mypy checks bench/ strictly and tests/ not at all.
    throwaway = importlib.import_module("tests.redis_server")
    if throwaway.REDIS_SERVER is None:
        say("fleet figures: skipped: no redis-server (apt-get install redis-server)")
        return [FleetRow("F1-F4 fleet figures (Redis)", "skipped: no redis-server", "—", True)]
    rows: list[FleetRow] = []
    with (
        launched("devserver.kaizala", ["--port", "0", "--latency-ms", "50"]) as stand_in,
        throwaway.redis_server() as server,
        throwaway.redis_cluster(masters=3) as cluster,
    ):
        kaizala = stand_in.kaizala
        steps: list[Callable[[], FleetRow]] = [
            lambda: single_flight(kaizala, server.url),
            lambda: hit_ratio(kaizala, server.url),
            lambda: single_flight(kaizala, cluster.url, on=" on a 3-master cluster"),
            lambda: hit_ratio(kaizala, cluster.url, on=" on a 3-master cluster"),
            lambda: redis_hit_cost(kaizala, server.url),
            lambda: redis_outage(throwaway.redis_server),
            lambda: failover(kaizala, server),
        ]
        for step in steps:
            server.client().flushall()
            for node in cluster.nodes:
                node.client().flushall()
            try:
                rows.append(step())
            except Exception as error:  # noqa: BLE001 - a figure that cannot run is reported, never crashes the bench
                rows.append(FleetRow("fleet figure", f"could not run: {type(error).__name__}: {error}", "—", False))
    return rows


if __name__ == "__main__":
    for row in fleet_figures():
        print("| " + " | ".join([row.figure, row.measured, row.target, "pass" if row.met else "**miss**"]) + " |")
