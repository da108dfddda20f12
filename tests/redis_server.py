"""Throwaway real Redis for tests: one `redis-server`, or a Redis Cluster of a few masters, on free loopback ports,
optionally over TLS with a CA made for the occasion, optionally with ACL users.

No persistence (`--save '' --appendonly no`), every server in its own temp dir, all stopped afterwards (and, as a
last resort, when the test process exits). Without the binary the Redis tests skip with a reason; with
REQUIRE_REDIS=1 (CI) they fail instead, as the browser test does with REQUIRE_BROWSER. The same goes for TLS when
this redis-server was built without it (`require_tls`).

A single server, as the fleet tests have used it (kill, restart on the same port with empty memory, pause, dump):

    with redis_server() as server:              # redis://127.0.0.1:<port>/0
        server.client().set("k", "v")
        server.kill(); server.start()           # same port, memory lost

A Redis Cluster of 3 masters and no replicas, named by one node's URL as Azure gives one endpoint:

    with redis_cluster() as cluster:            # redis://127.0.0.1:<port of node 0>
        client = cluster.client()               # a redis.cluster.RedisCluster
        cluster.node_for_key("k").kill()        # its slots stop answering; the other shards keep serving
        cluster.nodes[1].start()                # rejoins with its slots; returns when the cluster is ok again

Over TLS (`tls=True`: a fresh CA and a server certificate for 127.0.0.1 and localhost; or pass `Certificates`):

    with redis_server(tls=True) as server:      # rediss://127.0.0.1:<port>/0
        redis.Redis.from_url(server.url, ssl_ca_certs=str(server.ca_file))

As Azure Managed Redis with Entra ID: the default user off, one ACL user per identity, its password (the token)
replaced on each rotation. The fixture's own `.client()` keeps working through an admin user it made for itself:

    with redis_cluster(tls=True, acl="default-off") as cluster:
        cluster.add_user("app", token, FULL_ACCESS)
        cluster.set_password("app", next_token)  # the only password now, on every node
        cluster.client(username="app", password=next_token)
"""

import atexit
import datetime
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
import redis.cluster
import redis.crc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_SERVER = shutil.which("redis-server")
SECRET = b"test-deployment-secret-0123456789abcdef"
OTHER_SECRET = b"another-deployment-secret-0123456789abcdef"

CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10000  # Redis's default: a node's cluster bus listens on its port + 10000

# ACL rules for add_user. Every user also gets `reset on >password` first, so a rule list says all it may do.
FULL_ACCESS = ("~*", "&*", "+@all")
# Reads, and what redis-py (6.x and 7.x, read in their on_connect) sends to connect and find its way: AUTH, or
# HELLO 3 AUTH with protocol=3; CLIENT SETNAME with client_name; CLIENT SETINFO LIB-NAME/LIB-VER (Redis 7.2+; a
# refusal is ignored but fills ACL LOG); SELECT for db != 0; RedisCluster adds CLUSTER SLOTS and COMMAND, and ASKING
# while a slot migrates. Not here: CLIENT MAINT_NOTIFICATIONS, which redis-py 7 tries with RESP3 and which only
# Redis Enterprise / Azure Managed Redis know (a refusal is ignored), and CLIENT TRACKING (client-side caching only).
# No write, no admin, no pub/sub.
READ_ONLY = (
    "~*",
    "&*",
    "+@read",
    "+ping",
    "+echo",
    "+auth",
    "+hello",
    "+select",
    "+info",
    "+command",
    "+readonly",
    "+readwrite",
    "+asking",
    "+client|setname",
    "+client|getname",
    "+client|setinfo",
    "+client|id",
    "+client|info",
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
    "+cluster|info",
    "+cluster|myid",
    "+cluster|keyslot",
)
# Everything but pub/sub: no channel, no (S)SUBSCRIBE/PUBLISH.
NO_PUBSUB = ("~*", "resetchannels", "+@all", "-@pubsub")
# Commands newer than the oldest redis-server these fixtures run (Debian's 7.0), with the version that has them: on
# an older server acl_setuser leaves their rules out rather than refusing the whole user (Azure runs 7.2+).
_SINCE = {"client|setinfo": (7, 2)}
ADMIN_USER = "fixture-admin"  # made by disable_default_user / acl="default-off" for the fixture's own clients

AclMode = Literal["default-off", "requirepass"]
"""`acl=` of redis_server/redis_cluster: "default-off" disables the default user (Azure Managed Redis with Entra ID;
the fixture's clients use ADMIN_USER), "requirepass" gives it a password (`.password`, like access keys)."""

# One try, no backoff: redis-py's default Retry waits seconds before it gives up, also on a refused AUTH (its
# AuthenticationError is a ConnectionError). For clients that are meant to fail: `server.client(retry=NO_RETRY)`.
NO_RETRY = Retry(NoBackoff(), 0)
_PROBE = {"socket_timeout": 1, "socket_connect_timeout": 1, "retry": NO_RETRY}  # the fixture's own polling

_running: dict[int, subprocess.Popen[bytes]] = {}  # every redis-server started here and not yet stopped


@atexit.register
def _kill_leftovers() -> None:
    """A server whose test forgot to stop it (or whose context manager never exited) dies with the test process."""
    for process in list(_running.values()):
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def require_redis() -> None:
    """Call at module level: skip (or, with REQUIRE_REDIS=1, fail) when redis-server is not installed."""
    if REDIS_SERVER is not None:
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        raise RuntimeError("REQUIRE_REDIS=1 but no redis-server is installed (apt-get install redis-server)")
    pytest.skip("no redis-server on this machine (apt-get install redis-server)", allow_module_level=True)


def require_tls() -> None:
    """Skip (or, with REQUIRE_REDIS=1, fail) when redis-server is missing or was built without TLS. At module level or
    in a test or fixture; redis_server(tls=...) and redis_cluster(tls=...) call it themselves."""
    require_redis()
    problem = _tls_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        raise RuntimeError(f"REQUIRE_REDIS=1 but this redis-server does not serve TLS: {problem}")
    pytest.skip(
        f"this redis-server does not serve TLS (a build without BUILD_TLS=yes?): {problem}", allow_module_level=True
    )


@cache
def _tls_problem() -> str | None:
    """None when redis-server serves TLS (tried once per test process), else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="redis-tls-probe-") as directory:
        server = RedisServer(Path(directory), tls=make_certificates(Path(directory) / "tls"))
        try:
            server.start()
        except RuntimeError as error:
            return str(error)
        finally:
            server.stop()
    return None


# --- TLS ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """PEM files in a test's temp dir: a CA, and a certificate it signed for 127.0.0.1 and localhost with its key.
    A client trusts the server with `ssl_ca_certs=str(ca_file)`."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path, name: str = "redis-test") -> Certificates:
    """A fresh CA and a server certificate (SAN: IP 127.0.0.1, DNS localhost; server and client auth, as a cluster
    node is the client of its peers' buses) valid for a day, written to `directory`. ECDSA P-256: made in ms."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key_file.touch(mode=0o600)
    files.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


def _certificates(tls: "bool | Certificates | None", directory: Path) -> Certificates | None:
    if tls is None or tls is False:
        return None
    require_tls()
    return make_certificates(directory / "tls") if tls is True else tls


# --- one server -----------------------------------------------------------------------------------------------------


def key_slot(key: str | bytes) -> int:
    """The cluster slot of `key` (CRC16 of its hash tag, if any, mod 16384), as redis-py and Redis compute it."""
    return int(redis.crc.key_slot(key.encode() if isinstance(key, str) else key))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@cache
def _server_version() -> tuple[int, int]:
    assert REDIS_SERVER is not None
    answer = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, check=True, timeout=10)
    found = re.search(r"v=(\d+)\.(\d+)", answer.stdout)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _server_knows(rule: str) -> bool:
    since = _SINCE.get(rule[1:].lower()) if rule[:1] in "+-" else None
    return since is None or _server_version() >= since


def _rules(rules: str | Sequence[str]) -> list[str]:
    listed = rules.split() if isinstance(rules, str) else list(rules)
    if any(not rule or any(space.isspace() for space in rule) for rule in listed):
        raise ValueError(f"ACL rules and passwords are single words: {listed!r}")
    return listed


class RedisServer:
    """One redis-server on 127.0.0.1:`port` in `directory`: `start()` runs it, `kill()`/`stop()` end it, `restart()`
    is a kill and a start on the same port (memory lost; ACL users and passwords come back as they were).

    `tls`: serve TLS only (`--port 0 --tls-port <port>`, clients not asked for certificates); `.url` is then
    rediss:// and `.client()` trusts `.ca_file`. ACL users (`add_user`, `set_password`, `disable_default_user`,
    `require_password`) apply at once and again at every start (an ACL file written before it)."""

    def __init__(self, directory: Path, *, tls: Certificates | None = None, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else _free_port()
        self.certificates = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.username: str | None = None  # who the fixture's own clients are (None: the default user)
        self.password: str | None = None
        # The ACL as ACL SETUSER rules per user, all of them since it began: replayed from an ACL file on start.
        self._acl: dict[str, list[str]] = {}
        self._log_offset = 0  # where the last start's part of redis.log begins

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>/0, or rediss:// over TLS (then pass `ssl_ca_certs=str(server.ca_file)`)."""
        return f"{'rediss' if self.certificates else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed the server's certificate (None without TLS)."""
        return self.certificates.ca_file if self.certificates else None

    def connection_options(self) -> dict[str, Any]:
        """redis-py keyword arguments that reach this server as the fixture does (TLS trusting its CA, the admin user
        or the default user's password); tests override username/password to connect as another user."""
        options: dict[str, Any] = {"host": "127.0.0.1", "port": self.port}
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        if self.certificates:
            options |= {"ssl": True, "ssl_ca_certs": str(self.certificates.ca_file)}
        return options

    def client(self, **overrides: Any) -> "redis.Redis":
        """A redis.Redis to this server (to this node only, for a cluster node): `connection_options()`, 5 s
        timeouts, then `overrides` (e.g. username=, password=, protocol=3)."""
        options = self.connection_options() | {"socket_timeout": 5, "socket_connect_timeout": 5}
        return redis.Redis(**(options | overrides))

    def _options(self) -> dict[str, str]:
        options = {"--bind": "127.0.0.1", "--save": "", "--appendonly": "no", "--dir": str(self.directory)}
        options |= {"--protected-mode": "yes", "--loglevel": "warning"}
        if self.certificates:
            options |= {"--port": "0", "--tls-port": str(self.port)}
            options |= {"--tls-cert-file": str(self.certificates.cert_file)}
            options |= {"--tls-key-file": str(self.certificates.key_file)}
            options |= {"--tls-ca-cert-file": str(self.certificates.ca_file), "--tls-auth-clients": "no"}
        else:
            options["--port"] = str(self.port)
        if self._acl:
            acl_file = self.directory / "users.acl"
            acl_file.write_text("".join(f"user {name} {' '.join(rules)}\n" for name, rules in self._acl.items()))
            options["--aclfile"] = str(acl_file)
        return options

    def start(self) -> None:
        """Run redis-server on `port` and return once it answers PING (at most 10 s; RuntimeError with its log)."""
        self._launch()
        self._wait_until_up(time.monotonic() + 10)

    def _launch(self) -> None:
        assert REDIS_SERVER is not None
        assert self.process is None or self.process.poll() is not None, "already running"
        with (self.directory / "redis.log").open("ab") as log:
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                [REDIS_SERVER, *(part for pair in self._options().items() for part in pair)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        _running[self.process.pid] = self.process

    def _wait_until_up(self, give_up: float) -> None:
        assert self.process is not None
        with self.client(**_PROBE) as client:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    if self.process.poll() is not None or time.monotonic() > give_up:
                        self.kill()
                        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log()}") from None
                    time.sleep(0.01)

    def log(self) -> str:
        """The end of what redis-server logged (warnings and worse) since it was last started, for error messages."""
        try:
            with (self.directory / "redis.log").open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")[-2000:].strip() or "(empty log)"
        except FileNotFoundError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: connections break at once, memory is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._forget_process()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._forget_process()

    def _forget_process(self) -> None:
        if self.process is not None:
            _running.pop(self.process.pid, None)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self, seconds: float) -> None:
        """CLIENT PAUSE: every client's commands hang for `seconds` (connections stay open)."""
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")

    def dump(self) -> dict[bytes, list[bytes]]:
        """Every key and everything it holds (strings, sets), as raw bytes."""
        everything: dict[bytes, list[bytes]] = {}
        with self.client() as client:
            for key in client.scan_iter(count=1000):
                kind = client.type(key)
                if kind == b"string":
                    everything[key] = [client.get(key) or b""]
                elif kind == b"set":
                    everything[key] = sorted(client.smembers(key))
                else:
                    everything[key] = [kind]
        return everything

    def cluster_info(self) -> dict[str, str]:
        """CLUSTER INFO of this node (a cluster node only): {"cluster_state": "ok", ...}."""
        with self.client() as client:
            answer = client.execute_command("CLUSTER", "INFO")
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def acl_log(self, reset: bool = False) -> list[dict[str, Any]]:
        """ACL LOG: each refused command as {"reason", "object" (the command or key), "username", ...}, newest
        first; `reset` empties it instead."""
        with self.client() as client:
            if reset:
                client.execute_command("ACL", "LOG", "RESET")
                return []
            entries = client.execute_command("ACL", "LOG")
        decoded = [[part.decode() if isinstance(part, bytes) else part for part in entry] for entry in entries]
        return [dict(zip(entry[::2], entry[1::2], strict=True)) for entry in decoded]

    # --- ACL users ---

    def acl_setuser(self, name: str, *rules: str) -> None:
        """ACL SETUSER `name` `rules` (added to what the user has): now if running, and at every later start."""
        listed = [rule for rule in _rules(rules) if _server_knows(rule)]
        if self.running:
            with self.client() as client:
                client.execute_command("ACL", "SETUSER", name, *listed)
        default = ["on", "nopass", "~*", "&*", "+@all"] if name == "default" else []  # how a server starts
        self._acl.setdefault(name, default).extend(listed)

    def add_user(self, name: str, password: str, rules: str | Sequence[str] = FULL_ACCESS) -> None:
        """A user with `password` (its only one) and exactly `rules`: FULL_ACCESS, READ_ONLY, NO_PUBSUB or your own
        (a sequence or one space-separated string). Replaces a user of that name."""
        self.acl_setuser(name, "reset", "on", f">{password}", *_rules(rules))

    def set_password(self, name: str, password: str) -> None:
        """Make `password` the user's only password (`resetpass >password`): what a token rotation does. New
        connections must AUTH with it; connections already authenticated stay so (Redis does not drop them)."""
        self.acl_setuser(name, "resetpass", f">{password}")

    def disable_default_user(self, admin_password: str | None = None) -> None:
        """Turn the default user off (unauthenticated connections get NOAUTH), as Azure Managed Redis with Entra ID
        does; the fixture's own clients then connect as ADMIN_USER, made now (with `admin_password` or a random one)."""
        if self.username is None:
            password = admin_password or secrets.token_urlsafe(24)
            self.add_user(ADMIN_USER, password, FULL_ACCESS)
            self.username, self.password = ADMIN_USER, password
        self.acl_setuser("default", "off")

    def require_password(self, password: str) -> None:
        """The default user's only password (as `requirepass`, or Azure's access keys); `.password` says it."""
        self.acl_setuser("default", "resetpass", f">{password}")
        if self.username is None:
            self.password = password

    def _apply_acl_mode(self, acl: AclMode | None) -> None:
        if acl == "default-off":
            self.disable_default_user()
        elif acl == "requirepass":
            self.require_password(secrets.token_urlsafe(24))
        elif acl is not None:
            raise ValueError(f"acl is 'default-off', 'requirepass' or None, not {acl!r}")


def _start_on_a_free_port(server: RedisServer, attempts: int = 5) -> None:
    """Start, choosing another port when another process took the probed one before redis-server bound it."""
    for attempt in range(attempts):
        try:
            server.start()
        except RuntimeError:
            if "Address already in use" not in server.log() or attempt == attempts - 1:
                raise
            server.port = _free_port()
        else:
            return


@contextmanager
def redis_server(*, tls: bool | Certificates | None = None, acl: AclMode | None = None) -> Iterator[RedisServer]:
    """A running RedisServer in its own temp dir, stopped on exit. `tls=True` makes a CA and certificate for it (or
    pass `Certificates` to share a CA); `acl="default-off"` / `"requirepass"`, see AclMode. Skips (or fails, with
    REQUIRE_REDIS=1) when the binary or its TLS support is missing."""
    require_redis()
    with tempfile.TemporaryDirectory(prefix="redis-test-") as directory:
        server = RedisServer(Path(directory), tls=_certificates(tls, Path(directory)))
        server._apply_acl_mode(acl)  # before the first start: the ACL file holds it from the first moment
        try:
            _start_on_a_free_port(server)
            yield server
        finally:
            server.stop()


# --- a cluster ------------------------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int, taken: set[int]) -> list[int]:
    """`count` ports whose port + 10000 (the cluster bus) is free too, below 55536. Drawn under the kernel's
    ephemeral range (so no outgoing connection takes one meanwhile) when there is room, from all of it otherwise."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = (10000, ephemeral_low - BUS_PORT_OFFSET) if ephemeral_low > 21000 else (1024, 55536)
    ports: list[int] = []
    for _ in range(10000):
        if len(ports) == count:
            return ports
        port = low + secrets.randbelow(high - low)
        related = {port, port + BUS_PORT_OFFSET}
        if related & taken:
            continue
        if _port_is_free(port) and _port_is_free(port + BUS_PORT_OFFSET):
            ports.append(port)
            taken |= related
    raise RuntimeError(f"no {count} free pairs of ports (port, port + {BUS_PORT_OFFSET}) between {low} and {high}")


class ClusterNode(RedisServer):
    """A master of a LocalRedisCluster: a RedisServer with `--cluster-enabled yes`, its own nodes.conf, its bus on
    `port + 10000`. `start()` (after `kill()`) runs it again on the same port with the same nodes.conf, so it rejoins
    with its slots (their keys are lost), and returns once the whole cluster is ok."""

    def __init__(self, cluster: "LocalRedisCluster", directory: Path, port: int, slots: tuple[int, int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory, tls=cluster.certificates, port=port)
        self.cluster = cluster
        self.slots = slots  # first and last slot it serves

    @property
    def bus_port(self) -> int:
        return self.port + BUS_PORT_OFFSET

    @property
    def url(self) -> str:
        return f"{'rediss' if self.certificates else 'redis'}://127.0.0.1:{self.port}"

    def _options(self) -> dict[str, str]:
        options = super()._options()
        options |= {"--cluster-enabled": "yes", "--cluster-config-file": str(self.directory / "nodes.conf")}
        options |= {"--cluster-port": str(self.bus_port), "--cluster-require-full-coverage": "no"}
        options |= {"--cluster-node-timeout": str(self.cluster.node_timeout_ms)}
        if self.certificates:
            options |= {"--tls-cluster": "yes", "--tls-replication": "yes"}
        return options

    def start(self) -> None:
        self._launch()
        self._wait_until_up(time.monotonic() + 10)
        self.cluster.wait_ok()

    def serves(self, key: str | bytes) -> bool:
        return self.slots[0] <= key_slot(key) <= self.slots[1]


class LocalRedisCluster:
    """Masters on 127.0.0.1 sharing the 16384 slots evenly (node i: `nodes[i].slots`), no replicas, no persistence,
    `cluster-require-full-coverage no` (a dead master's slots fail, the others keep serving). Made by redis_cluster.

    ACL methods apply to every node (also to one that is down: it gets them when it starts again)."""

    def __init__(self, directory: Path, masters: int, *, tls: Certificates | None, node_timeout_ms: int) -> None:
        self.directory = directory
        self.certificates = tls
        self.node_timeout_ms = node_timeout_ms
        self.masters = masters
        self.nodes: list[ClusterNode] = []

    @property
    def url(self) -> str:
        """One node's URL (node 0), as Azure gives one endpoint: redis://127.0.0.1:<port> or rediss://."""
        return self.nodes[0].url

    @property
    def ca_file(self) -> Path | None:
        return self.certificates.ca_file if self.certificates else None

    def connection_options(self) -> dict[str, Any]:
        """redis-py keyword arguments reaching node 0 as the fixture does (see RedisServer.connection_options)."""
        return self.nodes[0].connection_options()

    def client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A redis.cluster.RedisCluster started from node 0, as the fixture connects (admin user, CA), 5 s
        timeouts, then `overrides` (e.g. username=, password=)."""
        options = self.connection_options() | {"socket_timeout": 5, "socket_connect_timeout": 5}
        return redis.cluster.RedisCluster(**(options | overrides))

    def node_for_key(self, key: str | bytes) -> ClusterNode:
        """The master whose slots hold `key` (hash tags count: {user}:a and {user}:b share one)."""
        return next(node for node in self.nodes if node.serves(key))

    def dump(self) -> dict[bytes, list[bytes]]:
        """Every key and value on every running master, as RedisServer.dump."""
        everything: dict[bytes, list[bytes]] = {}
        for node in self.nodes:
            if node.running:
                everything |= node.dump()
        return everything

    def _create(self, acl: AclMode | None) -> None:
        taken: set[int] = set()
        ports = _cluster_ports(self.masters, taken)
        self.nodes = [
            ClusterNode(
                self,
                self.directory / f"node-{index}",
                port,
                (index * CLUSTER_SLOTS // self.masters, (index + 1) * CLUSTER_SLOTS // self.masters - 1),
            )
            for index, port in enumerate(ports)
        ]
        if acl == "default-off":
            self.disable_default_user()  # before the first start: the ACL files hold it from the first moment
        elif acl == "requirepass":
            self.require_password(secrets.token_urlsafe(24))
        elif acl is not None:
            raise ValueError(f"acl is 'default-off', 'requirepass' or None, not {acl!r}")
        for node in self.nodes:
            node._launch()
        give_up = time.monotonic() + 10
        for node in self.nodes:
            for attempt in range(5):
                try:
                    node._wait_until_up(give_up)
                    break
                except RuntimeError:
                    if "Address already in use" not in node.log() or attempt == 4:
                        raise
                node.port = _cluster_ports(1, taken)[0]  # a fresh node: nothing refers to the old port yet
                (node.directory / "nodes.conf").unlink(missing_ok=True)
                node._launch()
        for epoch, node in enumerate(self.nodes, start=1):
            with node.client() as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)  # distinct: no epoch collision to settle
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", *node.slots)
        for index, node in enumerate(self.nodes):
            with node.client() as client:
                for other in self.nodes[index + 1 :]:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", other.port, other.bus_port)
        self.wait_ok()

    def wait_ok(self, timeout: float = 10) -> None:
        """Return once every node runs and says cluster_state:ok, knows every other (connected, no handshake) and
        sees the slots as they were assigned; RuntimeError saying what is not so after `timeout` seconds.

        A master's state stays fail for 2 s after its process starts (Redis's CLUSTER_WRITABLE_DELAY), so a start
        takes at least that. A node down longer than cluster-node-timeout is flagged fail by the others until twice
        that after it came back: harmless here (no replica to fail over to; MOVED and CLUSTER SLOTS still name it)."""
        give_up = time.monotonic() + timeout
        while (problem := self._problem()) is not None:
            if time.monotonic() > give_up:
                raise RuntimeError(f"the cluster is not ok after {timeout} s: {problem}")
            time.sleep(0.02)

    def _problem(self) -> str | None:
        expected = {node.port: {node.slots} for node in self.nodes}
        for node in self.nodes:
            if not node.running:
                return f"node on port {node.port} is not running"
            try:
                with node.client(**_PROBE) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    nodes = client.execute_command("CLUSTER", "NODES")
            except redis.RedisError as error:
                return f"node on port {node.port}: {error}"
            if b"cluster_state:ok" not in info:
                return f"node on port {node.port}: not cluster_state:ok"
            seen, trouble = _parse_cluster_nodes(nodes.decode())
            if trouble:
                return f"node on port {node.port} sees {trouble}"
            if seen != expected:
                return f"node on port {node.port} sees slots {seen}, not {expected}"
        return None

    def acl_setuser(self, name: str, *rules: str) -> None:
        """RedisServer.acl_setuser on every node."""
        for node in self.nodes:
            node.acl_setuser(name, *rules)

    def add_user(self, name: str, password: str, rules: str | Sequence[str] = FULL_ACCESS) -> None:
        """RedisServer.add_user on every node."""
        for node in self.nodes:
            node.add_user(name, password, rules)

    def set_password(self, name: str, password: str) -> None:
        """RedisServer.set_password on every node: a token rotation."""
        for node in self.nodes:
            node.set_password(name, password)

    def disable_default_user(self) -> None:
        """RedisServer.disable_default_user on every node (one admin password for all)."""
        known = [node.password for node in self.nodes if node.username == ADMIN_USER]
        password = known[0] if known and known[0] else secrets.token_urlsafe(24)
        for node in self.nodes:
            node.disable_default_user(password)

    def require_password(self, password: str) -> None:
        """RedisServer.require_password on every node."""
        for node in self.nodes:
            node.require_password(password)

    def stop(self) -> None:
        """Stop every node: SIGTERM to all at once, then wait for each (SIGKILL after 10 s)."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            node.stop()


def _parse_cluster_nodes(text: str) -> tuple[dict[int, set[tuple[int, int]]], str | None]:
    """CLUSTER NODES as {port: {(first, last) slot ranges}}, and what is wrong with a peer link, if anything."""
    seen: dict[int, set[tuple[int, int]]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address, flags, link = fields[1], fields[2].split(","), fields[7]
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        if {"handshake", "noaddr"} & set(flags) or (link != "connected" and "myself" not in flags):
            return seen, f"{address} {fields[2]} {link}"
        ranges: set[tuple[int, int]] = set()
        for slot in fields[8:]:
            if slot.startswith("["):  # a slot being migrated or imported
                return seen, f"{address} migrating {slot}"
            first, _, last = slot.partition("-")
            ranges.add((int(first), int(last or first)))
        seen[port] = ranges
    return seen, None


@contextmanager
def redis_cluster(
    masters: int = 3,
    tls: bool | Certificates | None = None,
    acl: AclMode | None = None,
    *,
    node_timeout_ms: int = 3000,
) -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of `masters` masters (no replicas) on loopback, made by hand (CLUSTER ADDSLOTSRANGE, MEET) in
    about 2 s, stopped on exit. `tls=True`: TLS on clients and the cluster bus (`--tls-cluster yes`), a CA and
    certificate made for it (or pass `Certificates`); `acl`: see AclMode. `node_timeout_ms`: cluster-node-timeout."""
    require_redis()
    with tempfile.TemporaryDirectory(prefix="redis-cluster-test-") as directory:
        cluster = LocalRedisCluster(
            Path(directory), masters, tls=_certificates(tls, Path(directory)), node_timeout_ms=node_timeout_ms
        )
        try:
            cluster._create(acl)
            yield cluster
        finally:
            cluster.stop()
