"""A throwaway `redis-server` on a free loopback port, for tests that need the real thing.

No persistence (`--save '' --appendonly no`), its own temp dir, stopped afterwards. The tests kill (SIGKILL),
restart (same port, empty memory), pause and flush it. Without the binary the Redis tests skip with a reason; with
REQUIRE_REDIS=1 (CI) they fail instead, as the browser test does with REQUIRE_BROWSER.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
SECRET = b"test-deployment-secret-0123456789abcdef"
OTHER_SECRET = b"another-deployment-secret-0123456789abcdef"


def require_redis() -> None:
    """Call at module level: skip (or, with REQUIRE_REDIS=1, fail) when redis-server is not installed."""
    if REDIS_SERVER is not None:
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        raise RuntimeError("REQUIRE_REDIS=1 but no redis-server is installed (apt-get install redis-server)")
    pytest.skip("no redis-server on this machine (apt-get install redis-server)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> "redis.Redis":
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> None:
        assert REDIS_SERVER is not None
        options = {"--port": str(self.port), "--bind": "127.0.0.1", "--save": "", "--appendonly": "no"}
        options |= {"--dir": str(self.directory), "--protected-mode": "yes", "--loglevel": "warning"}
        self.process = subprocess.Popen(
            [REDIS_SERVER, *(part for pair in options.items() for part in pair)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        give_up = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: connections break at once, memory is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self, seconds: float) -> None:
        """CLIENT PAUSE: every client's commands hang for `seconds` (connections stay open)."""
        self.client().execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")

    def dump(self) -> dict[bytes, list[bytes]]:
        """Every key and everything it holds (strings, sets), as raw bytes."""
        client = self.client()
        everything: dict[bytes, list[bytes]] = {}
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            if kind == b"string":
                everything[key] = [client.get(key) or b""]
            elif kind == b"set":
                everything[key] = sorted(client.smembers(key))
            else:
                everything[key] = [kind]
        return everything


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="redis-test-") as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()
