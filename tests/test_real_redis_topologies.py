"""The real-Redis fixtures of tests/redis_server.py do what the fleet tests will lean on: a 3-master cluster that
spreads keys and redirects, TLS that trusts only its CA, ACL users that can only do what their rules say, password
rotation, and a cluster node killed and started again. Real redis-servers, no mocks."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster

from tests.redis_server import (
    FULL_ACCESS,
    NO_PUBSUB,
    NO_RETRY,
    READ_ONLY,
    LocalRedisCluster,
    RedisServer,
    key_slot,
    make_certificates,
    redis_cluster,
    redis_server,
    require_redis,
)

require_redis()

pytestmark = [pytest.mark.redis]

KEYS = [f"key:{index}" for index in range(300)]
CERTIFICATE_REFUSED = r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    with redis_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def tls_server() -> Iterator[RedisServer]:
    with redis_server(tls=True) as running:
        yield running


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[LocalRedisCluster]:
    """As Azure Managed Redis with Entra ID: a cluster over TLS, the default user off."""
    with redis_cluster(tls=True, acl="default-off") as running:
        yield running


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    with redis_server(acl="default-off") as running:
        yield running


@pytest.fixture(params=["server", "cluster"])
def acl_target(request: pytest.FixtureRequest) -> RedisServer | LocalRedisCluster:
    """A server, then a cluster over TLS, both with the default user off."""
    target: RedisServer | LocalRedisCluster = request.getfixturevalue(
        "acl_server" if request.param == "server" else "tls_cluster"
    )
    return target


def servers_of(target: RedisServer | LocalRedisCluster) -> list[RedisServer]:
    return list(target.nodes) if isinstance(target, LocalRedisCluster) else [target]


def write_keys(client: "redis.Redis | redis.cluster.RedisCluster") -> None:
    for key in KEYS:
        client.set(key, f"value of {key}")


def assert_spread_over_every_master(cluster: LocalRedisCluster) -> None:
    for node in cluster.nodes:
        held = node.dump()
        assert held, f"node on port {node.port} holds none of the keys"
        assert all(node.serves(key) for key in held)
    assert cluster.dump() == {key.encode(): [f"value of {key}".encode()] for key in KEYS}


def test_a_cluster_client_spreads_300_keys_over_all_three_masters(cluster: LocalRedisCluster) -> None:
    client = cluster.client()
    client.flushall()
    write_keys(client)
    assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}"
    assert len(cluster.nodes) == 3
    assert_spread_over_every_master(cluster)
    assert redis.cluster.RedisCluster.from_url(cluster.url).get(KEYS[0]) == f"value of {KEYS[0]}".encode()


def test_a_plain_client_on_one_node_is_moved_for_a_key_of_another_nodes_slot(cluster: LocalRedisCluster) -> None:
    first = cluster.nodes[0]
    key = next(key for key in KEYS if not first.serves(key))
    owner = cluster.node_for_key(key)
    with pytest.raises(redis.ResponseError, match=rf"{key_slot(key)} 127\.0\.0\.1:{owner.port}"):
        first.client().get(key)


def test_a_client_trusting_the_ca_reaches_the_tls_server_by_ip_and_by_name(tls_server: RedisServer) -> None:
    assert tls_server.url == f"rediss://127.0.0.1:{tls_server.port}/0"
    assert tls_server.ca_file is not None
    assert redis.Redis.from_url(tls_server.url, ssl_ca_certs=str(tls_server.ca_file)).ping()
    assert tls_server.client(host="localhost").ping()  # the certificate names localhost too


def test_a_client_trusting_another_ca_fails_on_the_certificate(tls_server: RedisServer, tmp_path: Path) -> None:
    other = make_certificates(tmp_path, name="someone-else")
    untrusting = redis.Redis.from_url(tls_server.url, ssl_ca_certs=str(other.ca_file), retry=NO_RETRY)
    with pytest.raises(redis.ConnectionError, match=CERTIFICATE_REFUSED):
        untrusting.ping()
    with pytest.raises(redis.ConnectionError, match=CERTIFICATE_REFUSED):
        redis.Redis.from_url(tls_server.url, retry=NO_RETRY).ping()  # the system's CAs do not know it either


def test_the_cluster_over_tls_serves_clients_that_trust_its_ca(tls_cluster: LocalRedisCluster, tmp_path: Path) -> None:
    assert tls_cluster.url == f"rediss://127.0.0.1:{tls_cluster.nodes[0].port}"
    assert tls_cluster.ca_file is not None
    client = tls_cluster.client()
    client.flushall()
    write_keys(client)
    assert_spread_over_every_master(tls_cluster)
    options = tls_cluster.connection_options()
    from_url = redis.cluster.RedisCluster.from_url(
        tls_cluster.url,
        ssl_ca_certs=str(tls_cluster.ca_file),
        username=options["username"],
        password=options["password"],
    )
    assert from_url.get(KEYS[-1]) == f"value of {KEYS[-1]}".encode()
    other = make_certificates(tmp_path, name="someone-else")
    with pytest.raises(redis.ConnectionError, match=CERTIFICATE_REFUSED):
        tls_cluster.nodes[1].client(ssl_ca_certs=str(other.ca_file), retry=NO_RETRY).ping()


def test_with_the_default_user_off_an_unauthenticated_client_is_refused(
    acl_target: RedisServer | LocalRedisCluster,
) -> None:
    for server in servers_of(acl_target):
        with pytest.raises(redis.AuthenticationError):
            server.client(username=None, password=None, retry=NO_RETRY).ping()
        assert server.client().ping()  # the fixture's own admin user


def test_a_required_password_lets_only_its_holders_in() -> None:
    with redis_server(acl="requirepass") as server:
        assert server.password
        assert server.client().ping()
        with pytest.raises(redis.AuthenticationError):
            server.client(password=None, retry=NO_RETRY).ping()


def test_a_read_only_user_connects_and_reads_but_cannot_write(acl_target: RedisServer | LocalRedisCluster) -> None:
    acl_target.add_user("reader", "reader-password", READ_ONLY)
    acl_target.client().set("{shared}:read", "there")
    for server in servers_of(acl_target):
        server.acl_log(reset=True)
    for protocol in (2, 3):
        reader = acl_target.client(username="reader", password="reader-password", protocol=protocol)
        assert reader.get("{shared}:read") == b"there"
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("{shared}:read", "overwritten")
    assert acl_target.client().get("{shared}:read") == b"there"
    denied = [entry for server in servers_of(acl_target) for entry in server.acl_log()]
    # Nothing redis-py sends to connect (AUTH/HELLO, CLIENT SETINFO, COMMAND, CLUSTER SLOTS...) was refused.
    assert {(entry["username"], entry["object"]) for entry in denied} == {("reader", "set")}


def test_a_user_without_pubsub_reads_and_writes_but_cannot_publish_or_subscribe(acl_server: RedisServer) -> None:
    acl_server.add_user("quiet", "quiet-password", NO_PUBSUB)
    quiet = acl_server.client(username="quiet", password="quiet-password")
    quiet.set("quiet:key", "1")
    assert quiet.get("quiet:key") == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        quiet.publish("forget", "everything")
    with pytest.raises(redis.exceptions.NoPermissionError):
        quiet.execute_command("SUBSCRIBE", "forget")  # what PubSub.subscribe sends; refused, so no subscribe mode


def test_a_rotated_password_is_the_only_one_new_connections_can_use(
    acl_target: RedisServer | LocalRedisCluster,
) -> None:
    acl_target.add_user("identity", "token-1", FULL_ACCESS)
    assert acl_target.client(username="identity", password="token-1").set("{rotation}:key", "1")
    acl_target.set_password("identity", "token-2")
    for server in servers_of(acl_target):
        with pytest.raises(redis.AuthenticationError):
            server.client(username="identity", password="token-1", retry=NO_RETRY).ping()
        assert server.client(username="identity", password="token-2").ping()
    assert acl_target.client(username="identity", password="token-2").get("{rotation}:key") == b"1"


def test_a_killed_cluster_node_starts_with_its_slots_and_users_and_the_cluster_takes_writes_again() -> None:
    with redis_cluster(acl="default-off") as cluster:
        cluster.add_user("identity", "token-1", FULL_ACCESS)
        client = cluster.client(username="identity", password="token-1")
        write_keys(client)
        victim, survivor = cluster.nodes[1], cluster.nodes[0]
        victim.kill()
        cluster.set_password("identity", "token-2")  # a rotation while the node is down reaches it when it starts
        with pytest.raises(redis.ConnectionError):
            victim.client(retry=NO_RETRY).ping()
        kept = next(key for key in KEYS if survivor.serves(key))
        assert survivor.client().get(kept) == f"value of {kept}".encode()  # the other shards keep serving
        assert survivor.cluster_info()["cluster_state"] == "ok"

        victim.start()  # returns once every node says the cluster is ok

        assert victim.running
        assert victim.dump() == {}  # its memory is gone, its slots are not
        assert cluster.node_for_key(next(key for key in KEYS if victim.serves(key))) is victim
        assert victim.client(username="identity", password="token-2").ping()
        with pytest.raises(redis.AuthenticationError):
            victim.client(username="identity", password="token-1", retry=NO_RETRY).ping()
        write_keys(cluster.client(username="identity", password="token-2"))
        assert_spread_over_every_master(cluster)
