"""Fixtures every test module may ask for by name: working settings, no secrets in logs, real redis-servers, the
Entra ID stand-in with a real JWKS endpoint (Teams), and headless Chromium against the local function host."""

import logging
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests
import requests_mock

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.devserver_process import DevServer
    from tests.otlp_collector import Collector
    from tests.redis_server import RedisServer

import shared
from shared.authenticator import root
from shared.settings import SETTING_NAMES
from tests.entra import CLIENT_ID, TENANT, Entra
from tests.helpers import CARD_ID, SECRETS, Reply, Upstream, identity_payload, origin, upstream_server

MOCK_URL = "https://kaizala.test/v1/users/me"
FLEET_SETTINGS = (
    "TOKEN_CACHE_REDIS_URL",
    "TOKEN_CACHE_REDIS_SECRET",
    "TOKEN_CACHE_REDIS_TIMEOUT_MS",
    "TOKEN_CACHE_LOCAL_SECONDS",
)
TEAMS_SETTINGS = tuple(name for name in SETTING_NAMES if name.startswith("TEAMS_"))
# Telemetry stays off unless a test turns it on (a developer's shell may export to a collector of their own).
TELEMETRY_SETTINGS = (
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    "PYTHON_ENABLE_OPENTELEMETRY",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
)
APPLICATION_ID_URI = f"api://contoso.example/{CLIENT_ID}"  # the v1 tokens' aud in tests/entra.py
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network and a root user, as Debian's Chromium needs them in a sandboxed CI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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
    for name in TELEMETRY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala")
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", MOCK_URL)
    monkeypatch.setenv("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", CARD_ID)
    monkeypatch.setenv("KAIZALA_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("TOKEN_REFRESH_AHEAD", "0")
    # In Azure the worker's thread pool bounds concurrent requests; these tests run more threads than that, so
    # the cap on upstream calls is raised here and tested on its own (test_limits.py).
    monkeypatch.setenv("KAIZALA_MAX_CONCURRENT_CALLS", "64")
    shared.clear_cache()


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator["Collector"]:
    """Telemetry on, exporting over OTLP/HTTP to a collector of the test's own on 127.0.0.1; off again after."""
    from shared import telemetry
    from tests.otlp_collector import collector
    from tests.telemetry_helpers import otlp_env

    with collector() as running:
        otlp_env(monkeypatch, running.url)
        assert telemetry.restart().name == "otlp"
        try:
            yield running
        finally:
            telemetry.shutdown()


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


# --- Teams: the Entra ID stand-in and a real JWKS endpoint; a module turns Teams on with usefixtures("teams_on") --


@pytest.fixture(scope="module")
def entra() -> Entra:
    return Entra()


@pytest.fixture(scope="module")
def jwks_server(entra: Entra) -> Iterator[Upstream]:
    """The tenant's JWKS on 127.0.0.1, answering with whatever keys `entra` publishes at the time."""
    with upstream_server(lambda _n, _t: Reply(body=entra.jwks(), headers={"Cache-Control": "max-age=86400"})) as up:
        yield up


@pytest.fixture
def keys_endpoint(jwks_server: Upstream) -> Upstream:
    """The JWKS server, its calls counted from this test's start."""
    with jwks_server.lock:
        jwks_server.calls.clear()
    return jwks_server


@pytest.fixture
def kaizala() -> Iterator[object]:
    """Kaizala's users/me, mocked; other requests (the keys endpoint) go out for real. Yields the users/me matcher,
    whose call_count counts only calls to Kaizala."""
    with requests_mock.Mocker(real_http=True) as mocker:
        yield mocker.get(MOCK_URL, json=identity_payload("kaizala-user"))


@pytest.fixture
def teams_on(monkeypatch: pytest.MonkeyPatch, keys_endpoint: Upstream, entra: Entra) -> None:
    """Teams on beside Kaizala, for the stand-in's tenant and app registration, with fresh signing keys."""
    monkeypatch.setenv("AUTH_PROVIDERS", "kaizala,teams")
    monkeypatch.setenv("TEAMS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("TEAMS_APPLICATION_ID_URI", APPLICATION_ID_URI)
    monkeypatch.setenv("TEAMS_ALLOWED_TENANT_IDS", TENANT)
    monkeypatch.setenv("TEAMS_AUTHORITY", origin(keys_endpoint))
    root().forget_signing_keys()
    entra.published = [entra.current]


# --- The card in headless Chromium, against `python -m devserver` ------------------------------------------------


@pytest.fixture(scope="module")
def card_server() -> Iterator["DevServer"]:
    from tests.devserver_process import devserver

    with devserver() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    """Headless Chromium; the test skips without it (fails instead with REQUIRE_BROWSER=1, as in CI)."""
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise RuntimeError("REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: "Browser", card_server: "DevServer") -> Iterator["Page"]:
    """A fresh browser context per test; the stand-in's injected faults are cleared after it."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.console_messages_seen = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_messages_seen.append(message.text))  # type: ignore[attr-defined]
    yield page
    context.close()
    requests.delete(f"{card_server.kaizala}/v1/dev/faults", timeout=5)
