"""`python -m devserver --instances N [--redis | --redis-url URL]` as real processes: every instance answers, a
token checked on one is served to the others from Redis (the stand-in counts one users/me call), everything it
started stops on Ctrl-C or SIGTERM, and bad option combinations are usage errors before anything starts."""

import signal
import socket
import subprocess
import sys

import pytest
import requests

from devserver.launch import parse_ready
from tests.devserver_process import ROOT, DevServer, devserver, devserver_env
from tests.redis_server import RedisServer, redis_server, require_redis

STARTUP = 90  # three or four processes importing the app on a loaded 2-core machine


def users_me_calls(server: DevServer) -> int:
    return int(requests.get(f"{server.kaizala}/v1/dev/stats", timeout=5).json().get("users_me", 0))


def validate(api: str, token: str) -> requests.Response:
    return requests.get(f"{api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def refuses_connections(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def address(url: str) -> str:
    return url.removeprefix("http://")


# --- the ready line: what tests and the benchmark parse ------------------------------------------------------------


def test_ready_line_of_one_host_is_parsed_as_before() -> None:
    line = "devserver ready: api=http://127.0.0.1:7071 kaizala=http://127.0.0.1:7072 (Ctrl-C to stop)"
    assert parse_ready(line) == ("http://127.0.0.1:7071", "http://127.0.0.1:7072", ["http://127.0.0.1:7071"], "")
    alone = "devserver ready: kaizala=http://127.0.0.1:7072 (Ctrl-C to stop)"  # python -m devserver.kaizala
    assert parse_ready(alone) == ("", "http://127.0.0.1:7072", [], "")
    assert parse_ready("Functions:\n") is None


def test_ready_line_of_a_fleet_lists_every_instance_and_redis() -> None:
    line = (
        "devserver ready: api=http://127.0.0.1:7071 kaizala=http://127.0.0.1:7072 "
        "instances=http://127.0.0.1:7071,http://127.0.0.1:7073 redis=127.0.0.1:6390 (Ctrl-C to stop)"
    )
    api, kaizala, apis, redis = parse_ready(line) or ("", "", [], "")
    assert (api, kaizala, redis) == ("http://127.0.0.1:7071", "http://127.0.0.1:7072", "127.0.0.1:6390")
    assert apis == ["http://127.0.0.1:7071", "http://127.0.0.1:7073"]


# --- bad option combinations: usage errors (exit 2) that say what to do, before anything starts ---------------------


def run_devserver(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = devserver_env()
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redis", "--redis-url", "redis://127.0.0.1:6379/0"], "not allowed with argument"),
        (["--instances", "0"], "use 1 to 16"),
        (["--instances", "17"], "use 1 to 16"),
        (["--instances", "three"], "use 1 to 16"),
        (["--redis-url", "http://127.0.0.1:6379/0"], "must look like rediss://"),
        (["--redis-url", "redis://cache.example.net:6379/0"], "redis:// is allowed only for localhost"),
        (["--redis-url", ""], "is empty"),
        (["--instances", "3", "--port", "65534"], "runs past port 65535"),
    ],
)
def test_bad_fleet_options_are_usage_errors(args: list[str], message: str) -> None:
    finished = run_devserver(*args)
    assert finished.returncode == 2, finished.stderr
    assert "usage: python -m devserver" in finished.stderr
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr
    assert "devserver ready" not in finished.stdout


def test_redis_url_is_never_echoed_in_its_error() -> None:
    finished = run_devserver("--redis-url", "redis://:s3cret-access-key@cache.example.net:6379/0")
    assert finished.returncode == 2
    assert "s3cret-access-key" not in finished.stderr + finished.stdout


def test_redis_without_the_binary_is_a_clear_error(tmp_path) -> None:
    python_only = tmp_path / "bin"
    python_only.mkdir()
    finished = run_devserver("--instances", "2", "--redis", path=str(python_only))
    assert finished.returncode == 2, finished.stderr
    assert "--redis needs the redis-server program" in finished.stderr
    assert "apt-get install redis-server" in finished.stderr
    assert "--redis-url" in finished.stderr


# --- real fleets --------------------------------------------------------------------------------------------------


def test_instances_without_redis_each_cache_on_their_own() -> None:
    with devserver("--instances", "2", startup=STARTUP) as server:
        assert len(server.apis) == 2
        assert server.api == server.apis[0]
        assert len(set(server.apis)) == 2
        assert server.redis == ""
        token = server.mint()
        for api in server.apis:
            assert validate(api, token).status_code == 200
        assert validate(server.apis[0], token).status_code == 200  # a hit where it was checked
        assert users_me_calls(server) == 2  # one per instance: nothing shared
        output = server.output()
    assert "each with its own token cache (no Redis)" in output
    for api in server.apis:
        assert refuses_connections(address(api))


def test_throwaway_redis_shares_the_cache_and_stops_with_the_devserver() -> None:
    require_redis()
    with devserver("--instances", "3", "--redis", startup=STARTUP) as server:
        assert len(set(server.apis)) == 3
        assert server.api == server.apis[0]
        assert server.redis.startswith("127.0.0.1:")
        assert not refuses_connections(server.redis)
        tokens = [server.mint(), server.mint(userId="a1b2c3d4-0002-4000-8000-000000000002")]
        requests.delete(f"{server.kaizala}/v1/dev/stats", timeout=5)
        for number, token in enumerate(tokens):
            first, *others = server.apis[number:] + server.apis[:number]
            assert validate(first, token).status_code == 200
            assert users_me_calls(server) == number + 1
            for api in others:  # a fleet hit: served from Redis, no users/me call
                answer = validate(api, token)
                assert answer.status_code == 200
                assert answer.json()["id"] == validate(first, token).json()["id"]
            assert users_me_calls(server) == number + 1
        status = stop_with(server, signal.SIGINT)
        output = server.output()
    assert status == 0, output
    assert "(fleet)" in output  # the instances' logs come through, prefixed
    assert "instance 2: " in output
    assert "throwaway Redis" in output
    assert refuses_connections(server.redis), "the throwaway redis-server outlived the devserver"
    for api in server.apis:
        assert refuses_connections(address(api)), f"{api} outlived the devserver"
    assert "Traceback" not in output
    assert "Fatal Python error" not in output


def test_redis_url_shares_a_running_redis_with_a_secret_made_for_the_run() -> None:
    require_redis()
    with redis_server() as redis:
        with devserver("--instances", "2", "--redis-url", redis.url, startup=STARTUP) as server:
            token = server.mint()
            assert validate(server.apis[0], token).status_code == 200
            assert validate(server.apis[1], token).status_code == 200
            assert users_me_calls(server) == 1
            assert server.redis == f"127.0.0.1:{redis.port}"
            status = stop_with(server, signal.SIGTERM)
            output = server.output()
        assert status == 0, output
        assert "TOKEN_CACHE_REDIS_SECRET is not set: the instances use one made for this run" in output
        still_running = redis_alive(redis)
        stored = redis.dump()
    assert still_running, "a Redis the devserver did not start must keep running"
    assert stored  # the instances wrote to it
    for api in server.apis:
        assert refuses_connections(address(api))


def redis_alive(redis: RedisServer) -> bool:
    return bool(redis.client().ping())


def stop_with(server: DevServer, signum: int) -> int:
    server.process.send_signal(signum)
    return server.process.wait(30)


def test_a_busy_instance_port_names_the_flag_and_stops_everything() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        finished = run_devserver("--instances", "2", "--port", str(port), "--kaizala-port", "0")
    assert finished.returncode == 2, finished.stderr
    assert f"port {port} is in use" in finished.stderr
    assert "--port" in finished.stderr
    assert "instance 1 (port" in finished.stderr
    assert "did not start" in finished.stderr
    assert "devserver ready" not in finished.stdout
    assert "Traceback" not in finished.stderr
