"""B1: a burst of first-time users at internet latency, under today's admission rule and the old one, same run.

200 distinct first requests (each a cache miss) arrive at once at `ValidateToken.main`, run by a thread pool the
size of the Python worker's default (min(32, CPUs + 4)), with KAIZALA_MAX_CONCURRENT_CALLS at its default (half
that pool) and KAIZALA_TIMEOUT_SECONDS=10, against a real loopback HTTP upstream that answers users/me after
150 ms. Each variant runs in a fresh process (`python -m bench.burst RULE` prints one JSON object).

Ideal: a perfect first-come line with `slots` calls at a time, each taking exactly the latency: request i (in
arrival order) is answered after ceil((i + 1) / slots) x latency, the whole burst after ceil(n / slots) x latency.
Reported: non-200 answers (target 0), p99 latency / the ideal p99 (target <= 1.5x), wall time / ideal wall.

Rules: "line" is the package's admission (shared/cache/admission.py); "fixed" is the rule it replaced (a miss
waits at most 0.25 s for a free slot, first to grab a freed slot wins), kept here as the baseline.
"""

import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.cache.admission import BUSY_RETRY_AFTER_SECONDS, Admission, Shed, Slot

REQUESTS = 200
LATENCY_SECONDS = 0.15
FIXED_WAIT_SECONDS = 0.25
CARD = "com.contoso.productpicker"


class FixedWait(Admission):
    """The old rule: wait at most 0.25 s for a free slot; whoever looks first when one frees takes it."""

    def enter(self, provider: str, service: str, deadline: float) -> Slot:
        give_up = min(deadline, time.monotonic() + FIXED_WAIT_SECONDS)
        while True:
            with self._lock:
                if len(self._running) < self.limit:
                    return self._occupy(provider, deadline)
            if time.monotonic() >= give_up:
                raise Shed(f"Too many checks with {service} are in progress.", "busy", BUSY_RETRY_AFTER_SECONDS)
            time.sleep(0.001)

    def _hand_over(self) -> None:  # no line: a freed slot goes to whoever looks next
        return


class _Kaizala(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(LATENCY_SECONDS)
        body = json.dumps(
            {"id": uuid.uuid4().hex, "name": "n", "phoneNumber": None, "pictureUrl": None, "actionPackageId": CARD}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


def _token() -> str:
    def part(data: dict[str, object]) -> str:
        import base64

        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part({'exp': int(time.time()) + 1800, 'n': uuid.uuid4().hex})}.sig"


def run(rule: str) -> dict[str, float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Kaizala)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "AUTH_PROVIDERS": "kaizala",
            "KAIZALA_IDENTITY_URL": f"http://127.0.0.1:{server.server_address[1]}/v1/users/me",
            "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": CARD,
            "KAIZALA_TIMEOUT_SECONDS": "10",
        }
    )
    for name in ("KAIZALA_MAX_CONCURRENT_CALLS", "PYTHON_THREADPOOL_THREAD_COUNT", "TOKEN_CACHE_REDIS_URL"):
        os.environ.pop(name, None)

    import azure.functions as func

    import ValidateToken
    from shared.authenticator import root
    from shared.settings import current_settings

    settings = current_settings()
    slots, pool = settings.max_concurrent_calls, min(32, (os.cpu_count() or 1) + 4)
    if rule == "fixed":
        root().use_admission(FixedWait(slots))
    tokens = [_token() for _ in range(REQUESTS)]
    started = time.monotonic()

    def call(token: str) -> tuple[int, float]:
        req = func.HttpRequest(
            "GET", "http://localhost/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, body=b""
        )
        status = ValidateToken.main(req).status_code
        return status, time.monotonic() - started

    with ThreadPoolExecutor(pool) as executor:
        answers = list(executor.map(call, tokens))
    wall = time.monotonic() - started
    server.shutdown()
    latencies = [seconds for _, seconds in answers]
    ideal = [math.ceil((i + 1) / slots) * LATENCY_SECONDS for i in range(REQUESTS)]
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    ideal_p99 = statistics.quantiles(ideal, n=100, method="inclusive")[98]
    return {
        "non_200": sum(status != 200 for status, _ in answers),
        "p99_ratio": p99 / ideal_p99,
        "wall_ratio": wall / (math.ceil(REQUESTS / slots) * LATENCY_SECONDS),
        "p99_s": p99,
        "slots": slots,
        "pool": pool,
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))
