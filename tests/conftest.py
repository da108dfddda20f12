import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

import shared
from shared.settings import SETTING_NAMES
from tests.helpers import CARD_ID, SECRETS

MOCK_URL = "https://kaizala.test/v1/users/me"
FLEET_SETTINGS = (
    "TOKEN_CACHE_REDIS_URL",
    "TOKEN_CACHE_REDIS_SECRET",
    "TOKEN_CACHE_REDIS_TIMEOUT_MS",
    "TOKEN_CACHE_LOCAL_SECONDS",
)
TEAMS_SETTINGS = tuple(name for name in SETTING_NAMES if name.startswith("TEAMS_"))


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


def leaks(lines: list[str]) -> list[str]:
    return [line for line in lines for value in SECRETS if value in line]


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[_Recorder]:
    """Every log record of every test, at every level: none may contain a token or phone number a test made."""
    recorder = _Recorder()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(recorder)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(old_level)
    leaked = leaks(recorder.lines)
    assert not leaked, f"a token or phone number reached the logs: {leaked[:3]}"


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Working settings for every test; a test changes one with monkeypatch."""
    for name in (
        "KAIZALA_ALLOWED_USER_IDS",
        "KAIZALA_BLOCKED_USER_IDS",
        "PRODUCTS_FILE",
        "TOKEN_CACHE_SECONDS",
        "TOKEN_CACHE_MAX_ENTRIES",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in FLEET_SETTINGS:  # the fleet cache stays off unless a test turns it on
        monkeypatch.delenv(name, raising=False)
    for name in TEAMS_SETTINGS:  # Teams stays off unless a test turns it on
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", MOCK_URL)
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", CARD_ID)
    monkeypatch.setenv("KAIZALA_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("TOKEN_REFRESH_AHEAD", "0")
    # In Azure the worker's thread pool bounds concurrent requests; these tests run more threads than that, so
    # the cap on upstream calls is raised here and tested on its own (test_limits.py).
    monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", "64")
    shared.clear_cache()


@pytest.fixture(scope="module")
def redis_db() -> Iterator["RedisServer"]:
    """A real redis-server on a free loopback port, shared by a module's tests (they flush it as they need)."""
    from tests.redis_server import redis_server

    with redis_server() as running:
        yield running


@pytest.fixture
def own_redis() -> Iterator["RedisServer"]:
    """A redis-server of the test's own, for tests that kill, restart or pause it."""
    from tests.redis_server import redis_server

    with redis_server() as running:
        yield running
