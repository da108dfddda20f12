"""`python -m devserver --instances N [--redis | --redis-url URL]`: a fleet of function hosts on one machine.

N function-host processes (`python -m devserver.instance`) share this process's Kaizala stand-in and, with
`--redis` (a throwaway `redis-server` on a free loopback port, stopped on exit) or `--redis-url`, one Redis: the
scale-out across instances, to see and measure on one machine. Instances listen on consecutive ports from `--port`
(skipping the stand-in's), or on free ports with `--port 0`. Their logs come through prefixed `instance <n>:`.
Ctrl-C or SIGTERM stops every instance, then the throwaway redis-server, then the stand-in.

Without these options `python -m devserver` runs exactly as before: one host, in this process.
"""

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from werkzeug.serving import BaseWSGIServer

from shared.settings import SettingsError, redis_url

from .cli import warn_if_exposed
from .instance import READY_PREFIX, StopFlag
from .kaizala import KaizalaStandIn

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # where `python -m devserver.instance` is found
MAX_INSTANCES = 16
STARTUP_SECONDS = 60.0  # every instance imports the app; a loaded 2-core machine is slow at it
STOP_SECONDS = 10.0
_output_lock = threading.Lock()


def instance_count(text: str) -> int:
    """argparse type for --instances."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of instances: use 1 to {MAX_INSTANCES}")
    return count


def redis_url_argument(text: str) -> str:
    """argparse type for --redis-url: the app's own rules (shared.settings), without echoing the URL (a secret)."""
    try:
        url = redis_url(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(f"the URL {exc.problem}") from None
    if url is None:
        raise argparse.ArgumentTypeError("is empty: pass redis://127.0.0.1:<port>/0, or --redis for a throwaway one")
    return url


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("a fleet of function hosts sharing one stand-in (and one Redis)")
    group.add_argument(
        "--instances",
        type=instance_count,
        default=1,
        help="function-host processes (default 1: one host, in this process, as without this option); they listen "
        "on consecutive ports from --port, skipping the stand-in's (--port 0: free ports)",
    )
    redis = group.add_mutually_exclusive_group()
    redis.add_argument(
        "--redis",
        action="store_true",
        help="share the token cache through a throwaway redis-server started on a free loopback port for this run "
        "(needs the redis-server binary; stopped on exit)",
    )
    redis.add_argument(
        "--redis-url",
        type=redis_url_argument,
        metavar="URL",
        help="share the token cache through this Redis (redis://127.0.0.1:<port>/0; rediss:// elsewhere); "
        "TOKEN_CACHE_REDIS_SECRET comes from the environment or settings file, else one is made for this run",
    )


def fleet_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> "Fleet | None":
    """The fleet the options ask for; None without them (today's single host). Bad combinations are usage errors
    (parser.error exits 2), before anything starts."""
    if args.instances == 1 and not args.redis and args.redis_url is None:
        return None
    redis_binary = None
    if args.redis:
        redis_binary = shutil.which("redis-server")
        if redis_binary is None:
            parser.error(
                "--redis needs the redis-server program, which is not on PATH (sudo apt-get install "
                "redis-server); or pass --redis-url redis://127.0.0.1:<port>/0 for a Redis already running"
            )
    if args.port and args.port + args.instances > 65536:
        parser.error(f"--instances {args.instances} from --port {args.port} runs past port 65535: pick a lower --port")
    return Fleet(args, redis_binary)


@dataclass
class Instance:
    number: int
    port: int
    process: subprocess.Popen[bytes]
    api: str = ""
    settled: threading.Event = field(default_factory=threading.Event)  # ready, or its output ended

    def pump(self, stream: IO[bytes], to: IO[str], *, watch_ready: bool) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if watch_ready and not self.api and line.startswith(READY_PREFIX):
                self.api = line[len(READY_PREFIX) :].strip()
                self.settled.set()
                continue
            with _output_lock:
                print(f"instance {self.number}: {line}", file=to, flush=True)
        if watch_ready:
            self.settled.set()


class Fleet:
    def __init__(self, args: argparse.Namespace, redis_binary: str | None) -> None:
        self.args = args
        self.redis_binary = redis_binary
        self.redis_port = 0
        self.redis_where = ""  # host:port only: a URL may hold the access key
        self.instances: list[Instance] = []
        self.redis_process: subprocess.Popen[bytes] | None = None
        self.redis_folder: tempfile.TemporaryDirectory[str] | None = None
        self.stop = StopFlag()

    # --- before the stand-in starts ---------------------------------------------------------------------------

    def set_environment(self) -> None:
        """Put Redis's URL and secret in the environment the instances (and the start-up settings check) read."""
        if self.redis_binary is not None:
            self.redis_port = free_port()
            os.environ["TOKEN_CACHE_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
            os.environ["TOKEN_CACHE_REDIS_SECRET"] = secrets.token_urlsafe(32)  # per run: Redis lives this long
        elif self.args.redis_url is not None:
            os.environ["TOKEN_CACHE_REDIS_URL"] = self.args.redis_url
            if not os.environ.get("TOKEN_CACHE_REDIS_SECRET", "").strip():
                os.environ["TOKEN_CACHE_REDIS_SECRET"] = secrets.token_urlsafe(32)
                print(
                    "devserver: TOKEN_CACHE_REDIS_SECRET is not set: the instances use one made for this run (dev "
                    "only: what they write to Redis is unreadable to any other run or deployment)",
                    file=sys.stderr,
                    flush=True,
                )
        url = os.environ.get("TOKEN_CACHE_REDIS_URL", "").strip()
        if url:
            try:
                parts = urlsplit(url)
                self.redis_where = f"{parts.hostname}:{parts.port or 6379}"
            except ValueError:
                self.redis_where = "?"  # the settings check names the problem

    # --- after the stand-in started and the app loaded ---------------------------------------------------------

    def run(
        self,
        functions: Iterable[Any],
        *,
        origins: Iterable[str],
        cors_credentials: bool,
        kaizala_base: str,
        kaizala_servers: list[BaseWSGIServer],
        stand_in: KaizalaStandIn,
        banner: Callable[[Any, str, str, KaizalaStandIn], str],
    ) -> int:
        """Start Redis (if throwaway) and every instance, print the banner, wait for Ctrl-C/SIGTERM, stop all."""
        self.stop.on_signals()
        try:
            status = self._start(list(origins), cors_credentials, kaizala_servers[0].port)
            if status is not None or self.stop.is_set():
                return status or 0
            apis = [instance.api for instance in self.instances]
            stand_in.api_url = apis[0]
            warn_if_exposed(self.args.host, kaizala_base)
            print(self.banner(banner(functions, apis[0], kaizala_base, stand_in), apis, kaizala_base), flush=True)
            self._watch()
            return 0
        finally:
            print("devserver: stopping", file=sys.stderr, flush=True)
            self._stop_instances()
            self._stop_redis()
            for server in kaizala_servers:
                server.shutdown()

    def banner(self, single: str, apis: list[str], kaizala_base: str) -> str:
        """The single host's banner (functions, demo token, curl lines for the first instance), every instance,
        and a ready line that devserver.launch parses (api= stays the first instance)."""
        head = single.rpartition("devserver ready:")[0].rstrip("\n")
        if self.redis_binary is not None:
            sharing = f"sharing the token cache through a throwaway Redis at {self.redis_where}, stopped on exit"
        elif self.redis_where:
            sharing = f"sharing the token cache through Redis at {self.redis_where}"
        else:
            sharing = "each with its own token cache (no Redis)"
        lines = [head, "", f"Function host instances ({len(apis)} processes, {sharing}):"]
        lines += [f"  {number}: {api}" for number, api in enumerate(apis, 1)]
        lines += [f"Kaizala calls so far:  curl -s {kaizala_base}/v1/dev/stats", ""]
        ready = f"devserver ready: api={apis[0]} kaizala={kaizala_base} instances={','.join(apis)}"
        if self.redis_where:
            ready += f" redis={self.redis_where}"
        lines.append(f"{ready} (Ctrl-C to stop)")
        return "\n".join(lines)

    def _start(self, origins: list[str], cors_credentials: bool, kaizala_port: int) -> int | None:
        """None when everything is up (or a stop was asked for); else the exit status, having said why."""
        if self.redis_binary is not None and not self._start_redis(self.redis_binary):
            return None if self.stop.is_set() else 2
        ports = self._ports(kaizala_port)
        if ports is None:
            return 2
        for number, port in enumerate(ports, 1):
            self.instances.append(self._start_instance(number, port, origins, cors_credentials))
        give_up = time.monotonic() + STARTUP_SECONDS
        for instance in self.instances:
            while not instance.settled.wait(0.1):
                if self.stop.is_set():
                    return None
                if time.monotonic() > give_up:
                    break
            if not instance.api:
                where = f"port {instance.port}" if instance.port else "a free port"
                print(f"devserver: instance {instance.number} ({where}) did not start", file=sys.stderr, flush=True)
                return 2
        return None

    def _ports(self, kaizala_port: int) -> list[int] | None:
        if self.args.port == 0:
            return [0] * self.args.instances
        ports: list[int] = []
        port = self.args.port
        while len(ports) < self.args.instances:
            if port > 65535:
                print("devserver: the instances' ports run past 65535: pick a lower --port", file=sys.stderr)
                return None
            if port != kaizala_port:
                ports.append(port)
            port += 1
        return ports

    def _start_instance(self, number: int, port: int, origins: list[str], cors_credentials: bool) -> Instance:
        args = self.args
        command = [sys.executable, "-m", "devserver.instance", "--host", args.host, "--port", str(port)]
        command += ["--root", str(Path(args.root).resolve())]
        for origin in sorted(origins):
            command += ["--cors-origin", origin]
        command += ["--cors-credentials"] if cors_credentials else []
        command += ["--no-access-log"] if args.no_access_log else []
        command += ["--invoke", args.invoke]
        process = subprocess.Popen(  # noqa: S603 - our own module, with our own arguments
            command,
            cwd=PACKAGE_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE,  # closes when this process ends, however it ends: the instance then stops
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        instance = Instance(number, port, process)
        for stream, to, watch in ((process.stdout, sys.stdout, True), (process.stderr, sys.stderr, False)):
            if stream is not None:
                threading.Thread(
                    target=instance.pump, args=(stream, to), kwargs={"watch_ready": watch}, daemon=True
                ).start()
        return instance

    def _watch(self) -> None:
        """Until Ctrl-C/SIGTERM; an instance that exits on its own is reported once (the others keep serving)."""
        reported: set[int] = set()
        while not self.stop.wait(0.5):
            for instance in self.instances:
                status = instance.process.poll()
                if status is not None and instance.number not in reported:
                    reported.add(instance.number)
                    print(
                        f"devserver: WARNING: instance {instance.number} ({instance.api}) exited with status {status}",
                        file=sys.stderr,
                        flush=True,
                    )

    def _stop_instances(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGTERM)
        for instance in self.instances:
            try:
                instance.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait()
            if instance.process.stdin is not None:
                instance.process.stdin.close()

    # --- the throwaway redis-server ----------------------------------------------------------------------------

    def _start_redis(self, binary: str) -> bool:
        self.redis_folder = tempfile.TemporaryDirectory(prefix="devserver-redis-")
        folder = Path(self.redis_folder.name)
        options = {"--port": str(self.redis_port), "--bind": "127.0.0.1", "--save": "", "--appendonly": "no"}
        options |= {"--dir": str(folder), "--protected-mode": "yes", "--loglevel": "warning"}
        with (folder / "redis.log").open("wb") as log:
            self.redis_process = subprocess.Popen(  # noqa: S603 - the redis-server found on PATH
                [binary, *(part for pair in options.items() for part in pair)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches it through us, after the instances stopped
            )
        give_up = time.monotonic() + 10
        while not _pings(self.redis_port):
            if self.stop.is_set():
                return False
            if self.redis_process.poll() is not None or time.monotonic() > give_up:
                output = (folder / "redis.log").read_text(errors="replace").strip()
                print(
                    f"devserver: cannot start redis-server on 127.0.0.1:{self.redis_port}:\n{output or '(no output)'}",
                    file=sys.stderr,
                    flush=True,
                )
                return False
            time.sleep(0.02)
        return True

    def _stop_redis(self) -> None:
        if self.redis_process is not None and self.redis_process.poll() is None:
            self.redis_process.terminate()
            try:
                self.redis_process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.redis_process.kill()
                self.redis_process.wait()
        if self.redis_folder is not None:
            self.redis_folder.cleanup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
