"""The fleet cache on a real 3-master Redis Cluster on loopback (Azure Managed Redis' default OSS clustering), the
URL naming one node as Azure's does: detected without a setting, one Kaizala call per token for the fleet, the
throttle seen from every shard, purges across shards and on every primary, a node killed and back without a wrong
answer, and TLS with a private CA (TOKEN_CACHE_REDIS_CA_FILE) or, without it, a WARNING naming the certificate."""

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devserver.launch import ROOT
from shared.errors import IdentityUnavailable
from shared.fleet import FleetCache
from shared.fleet.cache import OPEN_SECONDS
from shared.fleet.sealing import Sealer
from shared.identity import Identity
from tests.fleet_instances import Instance, all_at_once
from tests.helpers import Reply, identity_payload, make_jwt, upstream_server, wait_for
from tests.redis_server import SECRET, LocalRedisCluster, key_slot, redis_cluster, require_redis, require_tls

require_redis()

pytestmark = [pytest.mark.redis]

NAMESPACE = Sealer(SECRET).namespace


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    with redis_cluster(masters=3) as running:
        yield running


@pytest.fixture
def fleet_of(cluster: LocalRedisCluster) -> Iterator[Callable[..., list[Instance]]]:
    cluster.wait_ok()
    for primary in cluster.nodes:
        primary.client().flushall()
    made: list[Instance] = []

    def make(count: int, upstream_url: str, **options: Any) -> list[Instance]:
        instances = [Instance(cluster.url, upstream_url, **options) for _ in range(count)]
        made.extend(instances)
        return instances

    yield make
    for instance in made:
        instance.fleet.close()


def per_token(_n: int, token: str | None) -> Reply:
    return Reply(body=identity_payload(f"user-{(token or '')[-6:]}"), delay=0.05)


def test_the_server_is_detected_as_a_cluster_and_keys_spread_over_every_shard(fleet_of, cluster) -> None:
    with upstream_server(per_token) as up:
        first, second = fleet_of(2, up.url)
        tokens = [make_jwt() for _ in range(30)]
        for token in tokens:
            first.get(token)
        for token in tokens:
            assert second.get(token)[1] == "fleet"
        assert up.count == 30  # with a plain client: 60 (every key on another node answered MOVED)
        assert first.fleet.kind == "cluster"
    holding = [node for node in cluster.nodes if any(b":e:" in key for key in node.client().scan_iter(count=1000))]
    assert len(holding) == 3


def test_a_tokens_entry_and_lease_share_a_slot(fleet_of, cluster) -> None:
    with upstream_server(per_token) as up:
        (instance,) = fleet_of(1, up.url)
        instance.get(make_jwt())
    keys = [key for node in cluster.nodes for key in node.client().scan_iter(count=1000)]
    (entry,) = [key for key in keys if b":e:" in key]
    assert key_slot(entry) == key_slot(entry.replace(b":e:", b":l:"))


def test_concurrent_first_requests_on_four_instances_make_one_kaizala_call(fleet_of) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.3)) as up:
        instances = fleet_of(4, up.url)
        assert all_at_once(instances, make_jwt(), 32) == {"user-1"}
        assert up.count == 1


def test_a_429_one_instance_saw_holds_every_instance_back(fleet_of) -> None:
    with upstream_server(lambda _n, _t: Reply(429, headers={"Retry-After": "3"})) as up:
        first, second, third = fleet_of(3, up.url)
        with pytest.raises(IdentityUnavailable):
            first.get(make_jwt())
        for instance in (second, third):
            for _ in range(3):  # tokens whose keys live on other shards than the throttle's
                with pytest.raises(IdentityUnavailable):
                    instance.get(make_jwt())
        assert up.count == 1


def purge(cluster: LocalRedisCluster, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {"TOKEN_CACHE_REDIS_URL": cluster.url, "TOKEN_CACHE_REDIS_SECRET": SECRET.decode(), "PATH": ""}
    command = [sys.executable, "-m", "shared.purge", *arguments]
    return subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_purge_user_works_across_shards_and_every_instance_hears_it(fleet_of, cluster) -> None:
    with upstream_server(per_token) as up:
        instances = fleet_of(3, up.url)
        tokens = [make_jwt() for _ in range(12)]
        users = {instances[0].get(token)[0].id for token in tokens}
        for instance in instances[1:]:
            for token in tokens:
                instance.get(token)
        assert wait_for(lambda: all(i.fleet.subscribed.is_set() for i in instances), 5)
        for user in sorted(users):
            done = purge(cluster, "--user", user)
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("purged 1 shared identities")
        assert wait_for(lambda: all(i.cache.counts()["identities"] == 0 for i in instances), 2.0)
    assert not [key for key in cluster.dump() if b":e:" in key]


def test_purge_all_reaches_every_primary(fleet_of, cluster) -> None:
    with upstream_server(per_token) as up:
        (instance,) = fleet_of(1, up.url)
        for _ in range(30):
            instance.get(make_jwt())
    done = purge(cluster, "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("purged 30 shared identities")
    assert not [key for key in cluster.dump() if key.startswith(NAMESPACE.encode())]


def test_the_check_names_a_cluster(cluster) -> None:
    done = purge(cluster, "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server: ok: a Redis Cluster (3 primaries)" in done.stdout


def test_a_node_killed_and_back_costs_no_request_and_sharing_resumes(fleet_of, cluster) -> None:
    with upstream_server(per_token) as up:
        first, second = fleet_of(2, up.url, open_seconds=None)
        errors: list[BaseException] = []
        answers: list[tuple[str, str]] = []
        stop = threading.Event()
        tokens = [make_jwt() for _ in range(20)]
        expected = {token: f"user-{token[-6:]}" for token in tokens}

        def traffic(instance: Instance) -> None:
            while not stop.is_set():
                for token in tokens:
                    try:
                        answers.append((token, instance.get(token)[0].id))
                    except Exception as error:
                        errors.append(error)
                stop.wait(0.02)

        threads = [threading.Thread(target=traffic, args=(i,)) for i in (first, second)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            cluster.nodes[1].kill()
            time.sleep(1.5)
            cluster.nodes[1].start()  # back, with its slots, empty
            time.sleep(OPEN_SECONDS + 1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert errors == []
        assert all(identity == expected[token] for token, identity in answers)  # 0 wrong answers
        assert len(answers) > 200

        fresh = make_jwt()

        def shared() -> bool:
            first.cache.clear()
            second.cache.clear()
            first.get(fresh)
            return second.get(fresh)[1] == "fleet"

        assert wait_for(shared, 5.0)


def test_nothing_readable_lands_on_any_node(fleet_of, cluster) -> None:
    payload = identity_payload("user-secret-id", phone="+15550100")
    with upstream_server(lambda _n, _t: Reply(body=payload)) as up:
        (instance,) = fleet_of(1, up.url)
        token = make_jwt()
        instance.get(token)
    everything = b" ".join(key + b" " + b" ".join(values) for key, values in cluster.dump().items())
    assert everything
    for needle in (token, "user-secret-id", "Name of user-secret-id", "+15550100", "pictures.example"):
        assert needle.encode() not in everything


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[LocalRedisCluster]:
    require_tls()
    with redis_cluster(masters=3, tls=True) as running:
        yield running


def someone() -> Identity:
    return Identity(id="u-1", name=None, phone_number=None, picture_url=None, action_package_id="card")


def test_a_tls_cluster_with_a_private_ca_works_given_the_ca_file(tls_cluster) -> None:
    fleet = FleetCache(tls_cluster.url, SECRET, timeout_ms=500, ca_file=str(tls_cluster.ca_file))
    try:
        token = make_jwt()
        fleet.store(token, someone(), time.time() + 600)
        assert fleet.lookup(token).entry is not None
        assert fleet.kind == "cluster"
    finally:
        fleet.close()


def test_without_the_ca_file_the_warning_names_the_certificate_and_nothing_is_shared(
    tls_cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    fleet = FleetCache(tls_cluster.url, SECRET, timeout_ms=500)
    try:
        token = make_jwt()
        fleet.store(token, someone(), time.time() + 600)
        assert fleet.lookup(token).entry is None  # fails closed: no unverified connection
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "its TLS certificate is not trusted" in warnings[0]
        assert "TOKEN_CACHE_REDIS_CA_FILE" in warnings[0]
    finally:
        fleet.close()
