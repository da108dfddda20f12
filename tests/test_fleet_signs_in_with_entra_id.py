"""The fleet cache with TOKEN_CACHE_REDIS_AUTH=entra, as the app builds it from its settings: it signs in with the
app's managed identity (the stand-in issues tokens living 4 s, each new one the identity's only Redis password, the
old one refused from then on) and keeps sharing through several rotations, with no restart, on a single node and
on a 3-master cluster whose default user is off (Azure Managed Redis with access keys disabled)."""

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from devserver.managed_identity import Identity as ManagedIdentity
from devserver.managed_identity import ManagedIdentityStandIn
from shared.fleet import FleetCache, entra
from shared.identity import Identity
from shared.settings import fleet_settings
from tests.helpers import make_jwt, secret
from tests.redis_server import SECRET, redis_cluster, redis_server, require_redis

require_redis()

pytestmark = [pytest.mark.redis]

TOKEN_SECONDS = 4
ROTATIONS = 3
APP = ManagedIdentity.make("function-app")


class Passwords:
    """`on_issue`: the newest token and the one before it are the identity's only passwords, on every node (each
    issue resets the user, so a token two rotations old stops working for any new sign-in). Azure accepts a token
    until it expires; keeping the previous one for one rotation gives the process the moment it needs to hand the
    renewed token to its connections, as a real endpoint would."""

    def __init__(self, add_user: Callable[..., None]) -> None:
        self._add_user = add_user
        self._previous: str | None = None
        self.issued = 0

    def __call__(self, object_id: str, token: str) -> None:
        secret(token)  # the log fixture fails the test if a token reaches a log
        passwords = [f">{token}"] + ([f">{self._previous}"] if self._previous else [])
        self._add_user(object_id, token, [*passwords[1:], "~*", "&*", "+@all"])
        self._previous = token
        self.issued += 1


def someone() -> Identity:
    return Identity(id="u-1", name=None, phone_number=None, picture_url=None, action_package_id="card")


def keeps_sharing(url: str, passwords: Passwords, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    """Store and look up from four threads across ROTATIONS token lifetimes: (lookups, misses, tokens issued)."""
    stand_in = ManagedIdentityStandIn(
        system_assigned=APP, user_assigned=[], token_seconds=TOKEN_SECONDS, latency_ms=50, on_issue=passwords
    )
    with stand_in.serving():
        for name, value in stand_in.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
        settings = fleet_settings(
            {
                "TOKEN_CACHE_REDIS_URL": url,
                "TOKEN_CACHE_REDIS_SECRET": SECRET.decode(),
                "TOKEN_CACHE_REDIS_AUTH": "entra",
                "TOKEN_CACHE_REDIS_TIMEOUT_MS": "500",
            }
        )
        fleet = FleetCache.from_settings(settings)
        assert fleet is not None
        counts = {"lookups": 0, "misses": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                token = make_jwt()
                fleet.store(token, someone(), time.time() + 600)
                found = fleet.lookup(token).entry is not None
                with lock:
                    counts["lookups"] += 1
                    counts["misses"] += not found
                stop.wait(0.01)

        threads = [threading.Thread(target=traffic) for _ in range(4)]
        try:
            for thread in threads:
                thread.start()
            time.sleep(TOKEN_SECONDS * ROTATIONS + 1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            fleet.close()
            entra.close_all()
    return counts["lookups"], counts["misses"], passwords.issued


def test_a_single_node_keeps_sharing_through_token_rotations(monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server(acl="default-off") as server:
        passwords = Passwords(server.add_user)  # FULL_ACCESS and this one password: the access policy "default"
        lookups, misses, issued = keeps_sharing(server.url, passwords, monkeypatch)
    assert issued > ROTATIONS  # rotated: each new token the only password
    assert lookups > 200
    assert misses == 0


def test_a_cluster_keeps_sharing_through_token_rotations(monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_cluster(masters=3, acl="default-off") as cluster:
        passwords = Passwords(cluster.add_user)
        lookups, misses, issued = keeps_sharing(cluster.url, passwords, monkeypatch)
    assert issued > ROTATIONS
    assert lookups > 200
    assert misses == 0


@pytest.fixture
def no_identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    yield
    entra.close_all()


def test_a_failed_sign_in_is_named_in_one_warning_and_nothing_fails(
    no_identity_endpoint: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="kaizala_auth")
    with redis_server(acl="default-off") as server:
        settings = fleet_settings(
            {
                "TOKEN_CACHE_REDIS_URL": server.url,
                "TOKEN_CACHE_REDIS_SECRET": SECRET.decode(),
                "TOKEN_CACHE_REDIS_AUTH": "entra",
            }
        )
        fleet = FleetCache.from_settings(settings)
        assert fleet is not None
        try:
            token = make_jwt()
            for _ in range(5):
                fleet.store(token, someone(), time.time() + 600)
                assert fleet.lookup(token).entry is None  # served as without Redis
        finally:
            fleet.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= 30 and "token cache Redis at" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "sign-in failed" in warnings[0]
