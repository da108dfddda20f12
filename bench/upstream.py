"""Processes the benchmark runs: the Kaizala stand-in alone, or the whole devserver."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

from shared.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
_READY = re.compile(r"devserver ready: (?:api=(\S+) )?kaizala=(\S+)")


@contextmanager
def process(module: str, args: Sequence[str], env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Start `python -m module args`; yields (api_url, kaizala_url) from its ready line; SIGTERM on exit."""
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**clean_environment(), **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            out.seek(0)
            match = _READY.search(out.read().decode(errors="replace"))
            if match:
                break
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                raise RuntimeError(f"{module} did not start")
            time.sleep(0.05)
        try:
            yield match.group(1) or "", match.group(2)
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def clean_environment() -> dict[str, str]:
    """This process's environment without the app's settings (the benchmark sets those in its own process)."""
    return {key: value for key, value in os.environ.items() if key not in SETTING_NAMES}


def mint(kaizala: str, count: int = 1) -> list[str]:
    with requests.Session() as session:
        return [session.post(f"{kaizala}/v1/dev/tokens", timeout=5).json()["token"] for _ in range(count)]


def upstream_calls(kaizala: str, reset: bool = False) -> int:
    url = f"{kaizala}/v1/dev/stats"
    stats = (requests.delete if reset else requests.get)(url, timeout=5).json()
    return int(stats.get("users_me", 0))
