"""Signing in to Redis with the app's managed identity (shared/fleet/entra.py, through redis-entraid), without Azure:
a real redis-server whose default user is off, the managed identity stand-in over real HTTP issuing tokens that
live 4 seconds (each new one the identity's only password), and a proxy that closes a connection when the token it
signed in with expires, as Azure Managed Redis does. Real time: a test that crosses rotations takes ~10 s."""

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.auth.token import SimpleToken
from redis.backoff import NoBackoff
from redis.retry import Retry

from devserver.managed_identity import Identity, ManagedIdentityStandIn
from shared.fleet import entra
from tests.managed_identity_helpers import ExpiringSignIns, TokenPasswords, redis_without_default_user
from tests.redis_server import RedisServer, require_redis

require_redis()
pytestmark = pytest.mark.redis

TOKEN_SECONDS = 4
SYSTEM = Identity.make("system-assigned")
USER_ASSIGNED = Identity.make("fleet-cache")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_without_default_user() as server:
        yield server


@dataclass
class Azure:
    """What the app sees in Azure: its managed identity endpoint, and Azure Managed Redis in front of Redis."""

    stand_in: ManagedIdentityStandIn
    passwords: TokenPasswords
    proxy: ExpiringSignIns
    server: RedisServer


@pytest.fixture
def azure(server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azure]:
    passwords = TokenPasswords(server)
    stand_in = ManagedIdentityStandIn(
        system_assigned=SYSTEM,
        user_assigned=[USER_ASSIGNED],
        token_seconds=TOKEN_SECONDS,
        latency_ms=50,
        on_issue=passwords,
    )
    proxy = ExpiringSignIns(server.port, passwords.accepts)
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    with stand_in.serving():
        for name, value in stand_in.environment().items():
            monkeypatch.setenv(name, value)
        try:
            yield Azure(stand_in, passwords, proxy, server)
        finally:
            entra.close_all()
            proxy.close()


def fleet_client(
    url: str, provider: entra.Credentials, *, max_connections: int, health_check_seconds: int = 0
) -> "redis.Redis":
    """As shared/fleet/client.py connects, with the Entra ID hook: the provider to the pool and to the client."""
    timeout = 0.5
    pool = entra.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=health_check_seconds,
        credential_provider=provider,
    )
    return redis.Redis(connection_pool=pool, credential_provider=provider)


def signs_in(server: RedisServer, object_id: str, token: str) -> bool:
    """Whether a fresh connection straight to redis-server signs in with this token."""
    client = redis.Redis(
        host="127.0.0.1", port=server.port, username=object_id, password=token, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        return False
    finally:
        client.close()


def test_pooled_connections_sign_in_again_at_every_renewal_and_keep_serving(azure: Azure) -> None:
    threads, seconds = 4, 12.0
    client = fleet_client(azure.proxy.url, entra.credential_provider(None), max_connections=threads)
    failures: Counter[str] = Counter()
    done = [0] * threads
    stop = time.monotonic() + seconds

    def work(number: int) -> None:
        while time.monotonic() < stop:
            try:
                client.set(f"entra:{number}", done[number])
                assert client.get(f"entra:{number}") == str(done[number]).encode()
                done[number] += 1
            except Exception as error:
                failures[type(error).__name__] += 1
            time.sleep(0.002)

    workers = [threading.Thread(target=work, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(seconds - 0.5)
    entra.close_all()  # no more renewals: the workers' last commands re-sign in every connection with the last token
    for worker in workers:
        worker.join()

    tokens = azure.passwords.tokens_of(SYSTEM.object_id)
    assert not failures, f"commands failed across the rotations: {dict(failures)}"
    assert all(count > 100 for count in done), done
    assert len(tokens) >= 4, f"only {len(tokens)} tokens in {seconds} s: fewer than 3 rotations"
    # Each connection open since the start outlived several tokens, and lived on only by signing in again with each.
    survivors = [connection for connection in azure.proxy.open_connections() if connection.sign_ins >= 3]
    assert len(survivors) >= threads - 1, [c.sign_ins for c in azure.proxy.open_connections()]
    for connection in survivors:
        outlived = sum(1 for issued in azure.passwords.issued_at if issued > connection.opened_at)
        assert connection.sign_ins >= outlived, (connection.sign_ins, outlived)
    # The rotation was real: every token but the newest is refused to a fresh sign-in; the newest works.
    assert [signs_in(azure.server, SYSTEM.object_id, token) for token in tokens] == [False] * (len(tokens) - 1) + [True]
    client.close()


def test_a_subscription_is_not_signed_in_again_and_is_dropped_when_its_token_expires(azure: Azure) -> None:
    """redis-py re-authenticates a pub/sub connection only with RESP3 (a RESP2 subscribed connection cannot run
    AUTH), and the fleet cache speaks RESP2: the subscription lives as long as the token it subscribed with. A
    listener that resubscribes (as shared/fleet/purges.py's does) hears messages again at once; what is published
    while it resubscribes is lost."""
    provider = entra.credential_provider(None)
    commands = fleet_client(azure.proxy.url, provider, max_connections=2)
    subscriber = fleet_client(azure.proxy.url, provider, max_connections=2, health_check_seconds=5)
    received: list[tuple[int, int]] = []  # (subscription number, message)
    dropped: Counter[str] = Counter()
    stop = threading.Event()

    def listen() -> None:
        subscription = 0
        while not stop.is_set():
            subscription += 1
            try:
                with subscriber.pubsub() as pubsub:  # type: ignore[no-untyped-call]
                    pubsub.subscribe("entra:purges")
                    while not stop.is_set():
                        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                        if message is not None and message["type"] == "message":
                            received.append((subscription, int(message["data"])))
            except redis.ConnectionError as error:
                dropped[type(error).__name__] += 1
                time.sleep(0.05)

    listener = threading.Thread(target=listen)
    listener.start()
    published = 0
    give_up = time.monotonic() + 11
    while time.monotonic() < give_up:
        commands.publish("entra:purges", published)
        published += 1
        time.sleep(0.02)
    time.sleep(0.2)
    stop.set()
    listener.join(timeout=5)

    subscriptions = {number for number, _ in received}
    assert dropped["ConnectionError"] >= 2, dict(dropped)  # dropped at token expiry, more than once
    assert len(subscriptions) >= 3, "the listener did not hear messages again after resubscribing"
    assert len(received) > published * 0.8, (len(received), published)
    assert len(azure.passwords.tokens_of(SYSTEM.object_id)) >= 3
    # The connections that run commands did sign in again (none lives past its token without doing so).
    assert any(connection.sign_ins >= 3 for connection in azure.proxy.open_connections())
    commands.close()
    subscriber.close()


def test_a_client_id_signs_in_as_that_user_assigned_identity(azure: Azure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", USER_ASSIGNED.client_id)
    user_assigned = fleet_client(
        azure.proxy.url, entra.credential_provider(os.environ["AZURE_CLIENT_ID"]), max_connections=2
    )
    system_assigned = fleet_client(azure.proxy.url, entra.credential_provider(None), max_connections=2)

    assert user_assigned.acl_whoami() == USER_ASSIGNED.object_id
    assert system_assigned.acl_whoami() == SYSTEM.object_id
    assert azure.stand_in.stats[f"issued:{USER_ASSIGNED.object_id}"] == 1
    assert entra.credential_provider(USER_ASSIGNED.client_id) is entra.credential_provider(USER_ASSIGNED.client_id)
    user_assigned.close()
    system_assigned.close()


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("failing", "500"),
        ("wrong header", "403"),
        ("unknown client id", "400"),
        ("endpoint down", "ConnectionError"),
    ],
)
def test_a_failed_sign_in_raises_sign_in_failed(
    azure: Azure, monkeypatch: pytest.MonkeyPatch, breakage: str, reason: str
) -> None:
    client_id = None
    if breakage == "failing":
        azure.stand_in.failing = 500
    elif breakage == "wrong header":
        monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    elif breakage == "unknown client id":
        client_id = Identity.make("nobody").client_id
    else:
        monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")  # discard: nothing listens
    client = fleet_client(azure.proxy.url, entra.credential_provider(client_id), max_connections=2)

    with pytest.raises(entra.SignInFailed) as failed:
        client.ping()

    assert isinstance(failed.value, redis.AuthenticationError)  # a RedisError: the breaker counts it
    message = str(failed.value)
    assert message.startswith("Microsoft Entra ID sign-in failed: ")
    assert reason in message
    # Just after a failure the next connection fails at once, without asking the endpoint again.
    asked = sum(azure.stand_in.stats.values())
    with pytest.raises(entra.SignInFailed):
        client.ping()
    assert sum(azure.stand_in.stats.values()) == asked
    client.close()


def test_after_a_failed_sign_in_the_next_connection_signs_in(azure: Azure) -> None:
    azure.stand_in.failing = 500
    client = fleet_client(azure.proxy.url, entra.credential_provider(None), max_connections=2)
    with pytest.raises(entra.SignInFailed):
        client.ping()
    azure.stand_in.failing = None
    time.sleep(entra.QUIET_AFTER_FAILURE_SECONDS + 5.1)  # MSAL itself remembers a 5xx answer for 5 s
    assert client.ping()
    client.close()


def test_a_failed_renewal_is_tried_again_and_connections_recover_without_a_restart(azure: Azure) -> None:
    client = fleet_client(azure.proxy.url, entra.credential_provider(None), max_connections=2)
    assert client.ping()
    first = len(azure.passwords.tokens_of(SYSTEM.object_id))
    azure.stand_in.failing = 500  # the renewal (due at 60% of the token's life) fails, and so do its retries
    time.sleep(TOKEN_SECONDS + 0.5)  # the token has expired: Azure Managed Redis has closed the connection
    with pytest.raises(redis.RedisError):
        client.ping()
    azure.stand_in.failing = None
    # The retries go on by themselves (every second here); MSAL remembers a 5xx answer for 5 s.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if client.ping():
                break
        except redis.RedisError:
            time.sleep(0.2)
    assert client.ping()
    assert len(azure.passwords.tokens_of(SYSTEM.object_id)) > first
    client.close()


def test_redis_pys_own_blocking_pool_cannot_re_authenticate() -> None:
    """Why entra.BlockingConnectionPool exists: redis-py's inherits ConnectionPool's re_auth_callback, which walks
    lists only ConnectionPool keeps. When this fails, redis-py has fixed it and the subclass can go."""
    token = SimpleToken("t", time.time() * 1000 + 60_000, time.time() * 1000, {"oid": "x"})
    with pytest.raises(AttributeError):
        redis.BlockingConnectionPool().re_auth_callback(token)
    entra.BlockingConnectionPool().re_auth_callback(token)


def test_redis_entraid_is_imported_only_when_a_connection_signs_in() -> None:
    script = (
        "import sys\n"
        "from shared.fleet import entra\n"
        "entra.credential_provider(None)\n"
        "print(sorted(m for m in ('redis_entraid', 'msal', 'azure.identity') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
