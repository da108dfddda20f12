"""Start `python -m devserver` as a real process on free ports, and stop it with SIGTERM."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from shared.settings import SETTING_NAMES
from tests.helpers import secret

ROOT = Path(__file__).resolve().parent.parent
_READY = re.compile(r"devserver ready: api=(\S+) kaizala=(\S+)")


@dataclass
class DevServer:
    process: subprocess.Popen[bytes]
    api: str
    kaizala: str
    stdout_path: Path
    stderr_path: Path

    def mint(self, **claims: object) -> str:
        response = requests.post(f"{self.kaizala}/v1/dev/tokens", json=claims, timeout=5)
        assert response.status_code == 201, response.text
        return secret(response.json()["token"])

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def devserver_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without this project's settings (those come from the settings file)."""
    env = {key: value for key, value in os.environ.items() if key not in SETTING_NAMES}
    env.update(overrides or {})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def devserver(*args: str, env: Mapping[str, str] | None = None, startup: float = 20) -> Iterator[DevServer]:
    with tempfile.TemporaryDirectory(prefix="devserver-") as folder:
        stdout_path, stderr_path = Path(folder, "stdout"), Path(folder, "stderr")
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "devserver", "--port", "0", "--kaizala-port", "0", *args],
                cwd=ROOT,
                env=devserver_env(env),
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + startup
        match = None
        while match is None:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("devserver did not start:\n" + stdout_path.read_text() + stderr_path.read_text())
            match = _READY.search(stdout_path.read_text(errors="replace"))
            time.sleep(0.05)
        server = DevServer(process, match.group(1), match.group(2), stdout_path, stderr_path)
        try:
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
