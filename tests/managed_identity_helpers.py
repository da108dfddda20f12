"""Test-side Azure Managed Redis with Microsoft Entra ID: a redis-server whose only user is the app's identity,
the managed identity stand-in's tokens as that user's password, and a proxy that closes a connection when its token
expires, as Azure Managed Redis does.

- `TokenPasswords` is the stand-in's `on_issue` hook: each new token becomes the object id's only password
  (`ACL SETUSER <oid> on resetpass >token ~* &* +@all`), so the previous token stops working for a fresh AUTH.
- `ExpiringSignIns` sits between the client and redis-server and reads what the client sends: the last AUTH (or
  HELLO ... AUTH) of each connection, with a token that was then that user's password, sets when the connection
  expires (the JWT's `exp`); at that moment the proxy closes it. Only a connection that signs in again with a newer
  token before then lives on. Redis itself never drops a signed-in connection when a password changes, so without
  this a test could not tell a connection that re-authenticated from one that did not.
"""

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import jwt
import redis

from tests.helpers import secret
from tests.redis_server import RedisServer, redis_server

ADMIN_USER = "test-admin"
ADMIN_PASSWORD = "test-admin-password-0123456789"  # a throwaway server's admin, never a token


def admin_client(server: RedisServer) -> "redis.Redis":
    return redis.Redis(
        host="127.0.0.1",
        port=server.port,
        username=ADMIN_USER,
        password=ADMIN_PASSWORD,
        socket_timeout=5,
        socket_connect_timeout=5,
    )


@contextmanager
def redis_without_default_user() -> Iterator[RedisServer]:
    """A throwaway redis-server where the default user is off: only named users sign in (as in Azure Managed
    Redis with Entra ID), and the test's own admin user sets the identities' passwords."""
    with redis_server() as server:
        plain = server.client()
        plain.execute_command("ACL", "SETUSER", ADMIN_USER, "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all")
        plain.execute_command("ACL", "SETUSER", "default", "off")
        server.client = lambda: admin_client(server)  # type: ignore[method-assign]  # its restart/ping helpers
        yield server


class TokenPasswords:
    """`on_issue`: the newest token of each object id is that user's only password."""

    def __init__(self, server: RedisServer) -> None:
        self._admin = admin_client(server)
        self._lock = threading.Lock()
        self.current: dict[str, str] = {}
        self.issued: list[tuple[str, str]] = []  # (object id, token), oldest first
        self.issued_at: list[float] = []

    def __call__(self, object_id: str, token: str) -> None:
        secret(token)  # the log fixture fails a test whose logs hold it
        with self._lock:
            self._admin.execute_command(
                "ACL", "SETUSER", object_id, "on", "resetpass", f">{token}", "~*", "&*", "+@all"
            )
            self.current[object_id] = token
            self.issued.append((object_id, token))
            self.issued_at.append(time.time())

    def accepts(self, token: str) -> bool:
        with self._lock:
            return token in self.current.values()

    def tokens_of(self, object_id: str) -> list[str]:
        with self._lock:
            return [token for owner, token in self.issued if owner == object_id]


@dataclass(eq=False)
class _Connection:
    client: socket.socket
    upstream: socket.socket
    opened_at: float = field(default_factory=time.time)
    expires_at: float | None = None  # the exp of the token it last signed in with
    sign_ins: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> bool:
        with self.lock:
            if self.closed:
                return False
            self.closed = True
        for sock in (self.client, self.upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return True


class ExpiringSignIns:
    """A loopback TCP proxy to `upstream_port` that closes each connection when the token it signed in with
    expires. `accepts(token)` says whether a token was a valid password when the connection sent it (a refused AUTH
    leaves the connection signed in as before, so it must not move the expiry)."""

    def __init__(self, upstream_port: int, accepts: Callable[[str], bool]) -> None:
        self._upstream_port = upstream_port
        self._accepts = accepts
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stats: Counter[str] = Counter()  # "connections", "sign-ins", "closed at expiry"
        self._threads = [
            threading.Thread(target=self._accept, name="proxy-accept", daemon=True),
            threading.Thread(target=self._expire, name="proxy-expire", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def open_connections(self) -> list[_Connection]:
        with self._lock:
            return [connection for connection in self._connections if not connection.closed]

    def close(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            connection = _Connection(client, upstream)
            with self._lock:
                self._connections.add(connection)
                self.stats["connections"] += 1
            threading.Thread(target=self._requests, args=(connection,), daemon=True).start()
            threading.Thread(target=self._answers, args=(connection,), daemon=True).start()

    def _requests(self, connection: _Connection) -> None:
        pending = bytearray()
        try:
            while chunk := connection.client.recv(65536):
                pending += chunk
                while (parsed := _take_command(pending)) is not None:
                    command, used = parsed
                    del pending[:used]
                    self._note(connection, command)
                connection.upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(connection)

    def _answers(self, connection: _Connection) -> None:
        try:
            while chunk := connection.upstream.recv(65536):
                connection.client.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(connection)

    def _note(self, connection: _Connection, command: list[bytes]) -> None:
        name = command[0].upper() if command else b""
        token: bytes | None = None
        if name == b"AUTH" and len(command) >= 2:
            token = command[-1]
        elif name == b"HELLO":
            words = [part.upper() for part in command]
            if b"AUTH" in words and words.index(b"AUTH") + 2 < len(command):
                token = command[words.index(b"AUTH") + 2]
        if token is None:
            return
        text = token.decode(errors="replace")
        if not self._accepts(text):
            return
        try:
            expires_at = float(jwt.decode(text, options={"verify_signature": False})["exp"])
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            return
        connection.expires_at = expires_at
        connection.sign_ins += 1
        with self._lock:
            self.stats["sign-ins"] += 1

    def _expire(self) -> None:
        while not self._stop.wait(0.02):
            now = time.time()
            for connection in self.open_connections():
                if connection.expires_at is not None and now >= connection.expires_at and connection.close():
                    with self._lock:
                        self.stats["closed at expiry"] += 1

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        with self._lock:
            self._connections.discard(connection)


def _take_command(buffer: bytearray) -> tuple[list[bytes], int] | None:
    """The first complete command in `buffer` (RESP array of bulk strings, or an inline command) and the bytes it
    takes; None while it is incomplete."""
    if not buffer:
        return None
    if buffer[:1] != b"*":
        end = buffer.find(b"\n")
        return None if end < 0 else (bytes(buffer[:end]).split(), end + 1)
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    position, parts = end + 2, []
    for _ in range(int(buffer[1:end])):
        end = buffer.find(b"\r\n", position)
        if end < 0:
            return None
        size = int(buffer[position + 1 : end])
        position = end + 2
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position : position + size]))
        position += size + 2
    return parts, position
