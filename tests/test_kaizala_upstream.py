"""The upstream call over real sockets: retries, timeouts, Retry-After, connection reuse, single flight."""

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress

import pytest

import ValidateToken
from tests.helpers import Reply, identity_payload, json_of, make_jwt, request, upstream_server


def use(monkeypatch: pytest.MonkeyPatch, url: str, timeout: float = 1.0) -> None:
    monkeypatch.setenv("KAIZALA_IDENTITY_URL", url)
    monkeypatch.setenv("KAIZALA_TIMEOUT_SECONDS", str(timeout))


def test_retries_502_503_504_then_succeeds(monkeypatch) -> None:
    statuses = {1: 502, 2: 503}
    with upstream_server(lambda n, _t: Reply(statuses[n]) if n in statuses else Reply(body=identity_payload())) as up:
        use(monkeypatch, up.url)
        response = ValidateToken.main(request(token=make_jwt()))
        assert response.status_code == 200
        assert up.count == 3


def test_at_most_two_retries_then_503(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(504)) as up:
        use(monkeypatch, up.url)
        response = ValidateToken.main(request(token=make_jwt()))
        assert response.status_code == 503
        assert json_of(response)["error"] == "identity_unavailable"
        assert up.count == 3


def test_500_and_429_are_not_retried(monkeypatch) -> None:
    for status in (500, 429):
        with upstream_server(lambda _n, _t, s=status: Reply(s, headers={"Retry-After": "9"})) as up:
            use(monkeypatch, up.url)
            response = ValidateToken.main(request(token=make_jwt()))
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "9"
            assert up.count == 1


def test_upstream_retry_after_is_passed_on_but_never_slept(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(503, headers={"Retry-After": "30"})) as up:
        use(monkeypatch, up.url)
        started = time.monotonic()
        response = ValidateToken.main(request(token=make_jwt()))
        assert time.monotonic() - started < 2
        assert response.headers["Retry-After"] == "30"
        assert up.count == 3


def test_hang_is_a_bounded_503_without_read_retries(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=1.5)) as up:
        use(monkeypatch, up.url, timeout=0.3)
        started = time.monotonic()
        response = ValidateToken.main(request(token=make_jwt()))
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert json_of(response)["error"] == "identity_unavailable"
        assert elapsed < 2 * 0.3 + 0.3
        assert up.count == 1


def test_connection_refused_is_503_quickly(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply()) as up:
        url = up.url
    use(monkeypatch, url)  # the server is closed now: connections are refused
    started = time.monotonic()
    response = ValidateToken.main(request(token=make_jwt()))
    assert response.status_code == 503
    assert time.monotonic() - started < 2


def test_upstream_failures_are_not_cached(monkeypatch) -> None:
    replies = iter([Reply(500), Reply(body=identity_payload())])
    with upstream_server(lambda _n, _t: next(replies)) as up:
        use(monkeypatch, up.url)
        token = make_jwt()
        assert ValidateToken.main(request(token=token)).status_code == 503
        assert ValidateToken.main(request(token=token)).status_code == 200
        assert up.count == 2


def test_concurrent_requests_with_one_token_make_one_upstream_call(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=0.3)) as up:
        use(monkeypatch, up.url)
        token = make_jwt()
        barrier = threading.Barrier(32)

        def call(_: int) -> int:
            barrier.wait()
            return ValidateToken.main(request(token=token)).status_code

        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(call, range(32)))
        assert statuses == [200] * 32
        assert up.count == 1


def test_concurrent_rejections_are_shared_too(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(401, delay=0.3)) as up:
        use(monkeypatch, up.url)
        token = make_jwt()
        barrier = threading.Barrier(16)

        def call(_: int) -> int:
            barrier.wait()
            return ValidateToken.main(request(token=token)).status_code

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(call, range(16))) == [401] * 16
        assert up.count == 1


def test_distinct_tokens_each_get_their_own_identity(monkeypatch) -> None:
    tokens = {make_jwt(): f"user-{i}" for i in range(20)}
    with upstream_server(lambda _n, t: Reply(body=identity_payload(tokens[t or ""]), delay=0.05)) as up:
        use(monkeypatch, up.url)

        def call(token: str) -> tuple[str, str]:
            return tokens[token], json_of(ValidateToken.main(request(token=token)))["id"]

        with ThreadPoolExecutor(8) as pool:
            pairs = list(pool.map(call, list(tokens) * 3))
        assert all(expected == got for expected, got in pairs)
        assert up.count == 20


def test_the_access_token_header_carries_the_token(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload())) as up:
        use(monkeypatch, up.url)
        token = make_jwt()
        ValidateToken.main(request(token=token))
        assert up.calls == [token]


# --- nothing crosses from one caller to the next -------------------------------------------------------------------


def test_no_cookie_travels_from_one_callers_answer_to_the_next_call(monkeypatch) -> None:
    users = {make_jwt(): "user-a", make_jwt(): "user-b"}
    with upstream_server(
        lambda _n, t: Reply(
            body=identity_payload(users[t or ""]),
            headers={"Set-Cookie": f"ARRAffinity={users[t or '']}; Path=/; HttpOnly"},
        )
    ) as up:
        use(monkeypatch, up.url)
        for token, user in users.items():
            assert json_of(ValidateToken.main(request(token=token)))["id"] == user
        assert up.cookies == [None, None]  # the upstream never got back the cookie it set
        assert up.connections == 1  # and the connection was still reused


# --- the upstream connection survives a "no" -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, {"error": "invalid token"}), (403, "x" * 10_000), (500, {"error": "boom"}), (404, None)],
)
def test_rejections_and_errors_reuse_one_connection(monkeypatch, status, body) -> None:
    with upstream_server(lambda _n, _t: Reply(status, body=body)) as up:
        use(monkeypatch, up.url)
        for _ in range(20):
            assert ValidateToken.main(request(token=make_jwt())).status_code in (401, 502, 503)
        assert up.count == 20
        assert up.connections == 1


def test_an_oversized_answer_is_not_read_to_its_end_and_its_connection_is_dropped(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body="x" * 200_000)) as up:
        use(monkeypatch, up.url)
        for _ in range(3):
            assert json_of(ValidateToken.main(request(token=make_jwt())))["error"] == "identity_bad_response"
        assert up.connections == 3


# --- one deadline per validation -----------------------------------------------------------------------------------

DEADLINE = 1.0
SLACK = 0.5  # thread scheduling on a loaded machine; every case below took 2.9 s or more before the fix


def timed_answer(token: str) -> tuple[int, str, float]:
    started = time.monotonic()
    response = ValidateToken.main(request(token=token))
    body = json_of(response)
    return response.status_code, body.get("error", ""), time.monotonic() - started


def assert_background_call_ends(within: float) -> None:
    from shared.authenticator import root

    ends = time.monotonic() + within
    while root().admission.busy:
        assert time.monotonic() < ends, "the upstream call outlived its deadline"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(lambda _n, _t: Reply(body=identity_payload(), delay=3), id="slow-status"),
        pytest.param(lambda _n, _t: Reply(503, delay=0.9), id="retried-503"),
        pytest.param(lambda _n, _t: Reply(body=identity_payload(), drip=0.3), id="dripping-body"),
        pytest.param(lambda _n, _t: Reply(body=identity_payload(), delay=30), id="hang"),
    ],
)
def test_a_validation_answers_by_its_deadline(monkeypatch, script) -> None:
    with upstream_server(script) as up:
        use(monkeypatch, up.url, timeout=DEADLINE)
        status, error, elapsed = timed_answer(make_jwt())
        assert (status, error) == (503, "identity_unavailable")
        assert DEADLINE * 0.8 <= elapsed < DEADLINE + SLACK
        assert_background_call_ends(within=DEADLINE)


def test_every_request_waiting_on_a_call_gets_its_answer_by_the_leaders_deadline(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), drip=0.3)) as up:
        use(monkeypatch, up.url, timeout=DEADLINE)
        token = make_jwt()
        barrier = threading.Barrier(8)

        def call(_: int) -> tuple[int, str, float]:
            barrier.wait()
            return timed_answer(token)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(8)))
        assert {(status, error) for status, error, _ in answers} == {(503, "identity_unavailable")}
        assert max(elapsed for _, _, elapsed in answers) < DEADLINE + SLACK
        assert up.count == 1


def test_a_fast_answer_after_a_retry_still_succeeds_within_the_deadline(monkeypatch) -> None:
    with upstream_server(lambda n, _t: Reply(503, delay=0.2) if n == 1 else Reply(body=identity_payload())) as up:
        use(monkeypatch, up.url, timeout=DEADLINE)
        status, _error, elapsed = timed_answer(make_jwt())
        assert status == 200
        assert elapsed < DEADLINE
        assert up.count == 2


# --- a hostile upstream cannot hold a call past its deadline -------------------------------------------------------


@contextmanager
def raw_upstream(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads one request head, then lets `answer` write whatever it likes."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                with suppress(OSError):
                    answer(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/users/me"
    finally:
        stop.set()
        listener.close()


def header_drip(connection: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
        connection.sendall(bytes([byte]))
        time.sleep(0.05)


def continue_flood(connection: socket.socket) -> None:
    ends = time.monotonic() + 10
    while time.monotonic() < ends:
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.02)


@pytest.mark.parametrize("answer", [header_drip, continue_flood], ids=["header-drip", "continue-flood"])
def test_the_upstream_call_itself_ends_at_the_deadline(monkeypatch, answer) -> None:
    """Before: each read got its own timeout, so the call (and its slot) lived 4 to 13 s past a 0.5 s deadline."""
    with raw_upstream(answer) as url:
        use(monkeypatch, url, timeout=0.5)
        status, error, elapsed = timed_answer(make_jwt())
        assert (status, error) == (503, "identity_unavailable")
        assert elapsed < 0.5 + SLACK
        assert_background_call_ends(within=0.5)


def test_a_lone_surrogate_in_kaizalas_answer_is_identity_bad_response(monkeypatch) -> None:
    with upstream_server(lambda _n, _t: Reply(body=b'{"id": "\\ud800", "actionPackageId": "x"}')) as up:
        use(monkeypatch, up.url)
        status, error, _ = timed_answer(make_jwt())
    assert (status, error) == (502, "identity_bad_response")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_never_shares_the_parents_connection(monkeypatch) -> None:
    """Before: parent and child wrote on one pooled socket and each read the other's answer (another identity)."""
    owners: dict[str, str] = {}
    with upstream_server(lambda _n, t: Reply(body=identity_payload(owners.get(t or "", "?")), delay=0.1)) as up:
        use(monkeypatch, up.url)
        warm = make_jwt()
        owners[warm] = "warm"
        ValidateToken.main(request(token=warm))  # the parent now has a pooled connection
        rounds = [(make_jwt(), make_jwt()) for _ in range(5)]
        for parent_token, child_token in rounds:
            owners[parent_token], owners[child_token] = "parent", "child"
        pid = os.fork()
        mine = [child if pid == 0 else parent for parent, child in rounds]
        expected = "child" if pid == 0 else "parent"
        answers = [json_of(ValidateToken.main(request(token=token))).get("id") for token in mine]
        if pid == 0:
            os._exit(0 if answers == [expected] * len(mine) else 1)
        _, status = os.waitpid(pid, 0)
    assert answers == ["parent"] * len(mine)
    assert os.waitstatus_to_exitcode(status) == 0
