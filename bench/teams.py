"""The Teams figures of `make bench`: a Teams tab's token next to the 401 floor and a cached Kaizala
token, measured interleaved in this process against the Entra ID and Kaizala stand-in, and the signing-key fetches
a burst of tokens with made-up key ids causes. Entry point: `teams_figures()`, rows as (figure, measured, target,
met)."""

import gc
import math
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import requests

from devserver.launch import launched

from .fleet import FleetRow, app_settings, say
from .upstream import mint

TENANT = "8f3a1c2e-5b7d-4e19-9c0a-2d6f4b8e1a70"  # the stand-in's demo tenant and app (devserver/demo_users.json)
CLIENT_ID = "6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d"
BURST = 1000


def _teams_token(stand_in: str, session: requests.Session, **options: object) -> str:
    return str(session.post(f"{stand_in}/v1/dev/teams-tokens", json=options, timeout=5).json()["token"])


def _key_fetches(stand_in: str) -> int:
    return int(requests.get(f"{stand_in}/v1/dev/stats", timeout=5).json().get("entra_keys", 0))


def _request(token: str | None) -> func.HttpRequest:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return func.HttpRequest("GET", "http://localhost/api/ValidateToken", headers=headers, body=b"")


def teams_figures(rounds: int = 2000, batch: int = 5) -> list[FleetRow]:
    say("teams: cached and uncached Teams tokens vs the 401 floor (interleaved, medians); a burst of unknown kids")
    with launched("devserver.kaizala", ["--port", "0", "--latency-ms", "50"]) as stand_in:
        base = stand_in.kaizala
        settings = {
            "AUTH_PROVIDERS": "kaizala,teams",
            "KAIZALA_IDENTITY_URL": f"{base}/v1/users/me",
            "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS": "com.contoso.productpicker",
            "KAIZALA_ALLOWED_USER_IDS": "",
            "TOKEN_CACHE_SECONDS": "300",
            "TOKEN_REFRESH_AHEAD": "1",
            "TEAMS_CLIENT_ID": CLIENT_ID,
            "TEAMS_ALLOWED_TENANT_IDS": TENANT,
            "TEAMS_AUTHORITY": base,
        }
        with app_settings(**settings), requests.Session() as session:
            import ValidateToken
            from shared.authenticator import root

            teams_token = _teams_token(base, session)
            (kaizala_token,) = mint(base)
            anonymous, teams, kaizala = _request(None), _request(teams_token), _request(kaizala_token)
            statuses = {ValidateToken.main(teams).status_code, ValidateToken.main(kaizala).status_code}
            floor: list[float] = []
            cached_teams: list[float] = []
            cached_kaizala: list[float] = []
            uncached_teams: list[float] = []
            clock = time.perf_counter
            gc.collect()
            gc.disable()  # as timeit does: a collection lands on whichever sample runs then
            try:
                for _ in range(rounds):
                    for samples, req in ((floor, anonymous), (cached_teams, teams), (cached_kaizala, kaizala)):
                        for _ in range(batch):
                            began = clock()
                            ValidateToken.main(req)
                            samples.append(clock() - began)
                    for _ in range(batch):
                        root().cache("teams").clear()  # untimed: the token is verified again; the signing keys stay
                        began = clock()
                        statuses.add(ValidateToken.main(teams).status_code)
                        uncached_teams.append(clock() - began)
            finally:
                gc.enable()

            burst = [_teams_token(base, session, kid=uuid.uuid4().hex) for _ in range(BURST)]
            root().forget_signing_keys()  # the burst starts with no keys: its first token fetches them
            before = _key_fetches(base)
            began_burst = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda token: ValidateToken.main(_request(token)).status_code, burst))
            refused = answers.count(401)
            seconds = time.monotonic() - began_burst
            fetches = _key_fetches(base) - before
            root().forget_signing_keys()  # the next run starts without keys
            root().clear()

    from shared.providers.signing_keys import REFETCH_SECONDS

    f, t, k, u = (statistics.median(values) * 1e6 for values in (floor, cached_teams, cached_kaizala, uncached_teams))
    bound = 1 + math.floor(seconds / REFETCH_SECONDS)
    return [
        FleetRow(
            "T1 cached Teams request / 401 floor",
            f"{t / f:.2f}x ({t:.1f} µs / {f:.1f} µs; cached Kaizala {k / f:.2f}x), medians of {rounds * batch}",
            "≤ 1.5x",
            t / f <= 1.5 and statuses == {200},
        ),
        FleetRow(
            "T2 uncached Teams request, keys cached (RS256 check, no network) / 401 floor",
            f"{u / f:.1f}x ({u:.0f} µs / {f:.1f} µs)",
            "report",
            statuses == {200},
        ),
        FleetRow(
            f"T3 signing-key fetches during {BURST:,} tokens with made-up kids",
            f"{fetches} in {seconds:.1f} s, 16 threads ({refused:,} refused 401)",
            f"≤ {bound} (1 per {REFETCH_SECONDS:.0f} s)",
            fetches <= bound and refused == BURST,
        ),
    ]


if __name__ == "__main__":
    for row in teams_figures():
        print("| " + " | ".join([row.figure, row.measured, row.target, "pass" if row.met else "**miss**"]) + " |")
