"""The benchmark's calls to the Kaizala stand-in's dev endpoints."""

import requests


def mint(kaizala: str, count: int = 1) -> list[str]:
    with requests.Session() as session:
        return [session.post(f"{kaizala}/v1/dev/tokens", timeout=5).json()["token"] for _ in range(count)]


def upstream_calls(kaizala: str, reset: bool = False) -> int:
    url = f"{kaizala}/v1/dev/stats"
    stats = (requests.delete if reset else requests.get)(url, timeout=5).json()
    return int(stats.get("users_me", 0))
