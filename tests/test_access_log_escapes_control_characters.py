"""The local host's access log escapes the control characters a request line carries, as werkzeug's own log does:
an ESC or BEL sent by a client never reaches the terminal raw (where it could move the cursor, recolour or rewrite
earlier lines, or ring)."""

import socket

import pytest

from devserver.kaizala import KaizalaStandIn
from devserver.wsgi import serve
from tests.helpers import wait_for


def access_log_of(request_line: bytes, capsys: pytest.CaptureFixture[str], status: int = 404) -> str:
    """What the access log printed for one request sent as raw bytes over a socket, answered with `status`."""
    server = serve(KaizalaStandIn(), "127.0.0.1", 0)
    printed = ""
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request_line + b"\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass

        def logged() -> bool:
            nonlocal printed
            printed += capsys.readouterr().err
            return f'" {status}' in printed

        assert wait_for(logged, 5), printed
    finally:
        server.shutdown()
        server.server_close()
    return printed


@pytest.mark.parametrize(
    ("request_line", "logged"),
    [
        (b"GET /v1/\x1b[2J\x07ring HTTP/1.1", r'"GET /v1/\x1b[2J\x07ring" 404'),
        (b"GET /v1/\x1b]0;owned\x07?token=\x1b[31m HTTP/1.1", r'"GET /v1/\x1b]0;owned\x07" 404'),
        (b"G\x1b[1AET /v1/x\x07 HTTP/1.1", r'"G\x1b[1AET /v1/x\x07" 404'),
    ],
)
def test_esc_and_bel_in_a_request_line_are_logged_escaped(
    request_line: bytes, logged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = access_log_of(request_line, capsys)
    assert "\x1b" not in printed
    assert "\x07" not in printed
    (line,) = [line for line in printed.splitlines() if '" 404' in line]
    assert line == f"127.0.0.1 - {logged}"


def test_a_request_line_too_malformed_to_parse_is_logged_escaped_and_without_its_query(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Four words: http.server answers 400 itself, quoting the whole line in the error it logs.
    printed = access_log_of(b"GET /v1/x?token=leaked\x1b[2J \x07extra HTTP/1.1", capsys, status=400)
    assert "\x1b" not in printed
    assert "\x07" not in printed
    assert "leaked" not in printed
    error, request = printed.splitlines()
    assert error.startswith("127.0.0.1 - code 400, message Bad request syntax ('GET /v1/x?… ")
    assert "x07extra HTTP/1.1" in error  # the rest of the line is there, escaped
    assert request == '127.0.0.1 - "- -" 400'
