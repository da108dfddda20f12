"""Start `python -m devserver` (or `devserver.kaizala`) as a real process and wait for its ready line.

Used by the tests and the benchmark; the ready line it parses is the one `devserver` prints.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from shared.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
# `instances=` (every function host's URL, comma-separated) and `redis=` (host:port) come with --instances/--redis.
_READY = re.compile(r"devserver ready: (?:api=(\S+) )?kaizala=(\S+)(?: instances=(\S+))?(?: redis=(\S+))?")


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    api: str  # empty for the stand-in alone
    kaizala: str
    stdout_path: Path
    stderr_path: Path
    apis: list[str] = field(default_factory=list)  # every function host instance's URL; apis[0] == api
    redis: str = ""  # host:port of the Redis the instances share, when they do

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def parse_ready(output: str) -> tuple[str, str, list[str], str] | None:
    """From a devserver's output: (api, kaizala, every instance's API URL, redis host:port); None before ready."""
    match = _READY.search(output)
    return None if match is None else ready_fields(match)


def ready_fields(match: re.Match[str]) -> tuple[str, str, list[str], str]:
    api = match.group(1) or ""
    apis = match.group(3).split(",") if match.group(3) else [api] * bool(api)
    return api, match.group(2), apis, match.group(4) or ""


def environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the app's settings (those come from the settings file), plus overrides."""
    env = {key: value for key, value in os.environ.items() if key not in SETTING_NAMES}
    env.update(overrides or {})
    env["PYTHONUNBUFFERED"] = "1"
    return env


L = TypeVar("L", bound=Launched)


def launched(
    module: str, args: Sequence[str], env: Mapping[str, str] | None = None
) -> AbstractContextManager[Launched]:
    return launched_as(Launched, module, args, env)


@contextmanager
def launched_as(
    kind: type[L], module: str, args: Sequence[str], env: Mapping[str, str] | None = None, startup: float = 20
) -> Iterator[L]:
    """`python -m module args` from the repository root; SIGTERM (then kill) on exit. Raises RuntimeError, with
    the process's output, when it exits or stays silent before its ready line."""
    with tempfile.TemporaryDirectory(prefix="devserver-") as folder:
        stdout_path, stderr_path = Path(folder, "stdout"), Path(folder, "stderr")
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(  # noqa: S603 - our own module
                [sys.executable, "-m", module, *args], cwd=ROOT, env=environment(env), stdout=out, stderr=err
            )
        deadline = time.monotonic() + startup
        match = None
        while match is None:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"{module} did not start:\n{stdout_path.read_text()}{stderr_path.read_text()}")
            match = _READY.search(stdout_path.read_text(errors="replace"))
            time.sleep(0.05)
        api, kaizala, apis, redis = ready_fields(match)
        running = kind(process, api, kaizala, stdout_path, stderr_path, apis, redis)
        try:
            yield running
        finally:
            try:
                running.stop()
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
