"""`python -m devserver` as a real process on free ports, with a token-minting helper for tests."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import requests

from devserver.launch import ROOT, Launched, launched_as
from devserver.launch import environment as devserver_env
from tests.helpers import secret

__all__ = ["ROOT", "DevServer", "devserver", "devserver_env"]


class DevServer(Launched):
    def mint(self, **claims: object) -> str:
        response = requests.post(f"{self.kaizala}/v1/dev/tokens", json=claims, timeout=5)
        assert response.status_code == 201, response.text
        return secret(response.json()["token"])


@contextmanager
def devserver(*args: str, env: Mapping[str, str] | None = None, startup: float = 20) -> Iterator[DevServer]:
    """`--instances N` starts N processes: give them `startup` seconds on a loaded machine."""
    ports = ["--port", "0", "--kaizala-port", "0"]
    with launched_as(DevServer, "devserver", [*ports, *args], env, startup=startup) as running:
        yield running
