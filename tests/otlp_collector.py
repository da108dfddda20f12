"""A real OTLP/HTTP collector on 127.0.0.1 for the telemetry tests: `POST /v1/traces|metrics|logs`, protobuf,
decoded by devserver.otlp (OpenTelemetry's own protobuf classes). It can also hang (accept, read, never answer
until released) or fail (503), and `down_url()` names a loopback port nobody listens on."""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devserver.otlp import MAX_BODY_BYTES, Received


@dataclass
class Collector:
    url: str = ""
    received: Received = field(default_factory=Received)
    mode: str = "ok"  # "ok", "hang" (until `release`), "fail" (503)
    release: threading.Event = field(default_factory=threading.Event)
    hung: int = 0  # requests held by "hang" so far


@contextmanager
def collector() -> Iterator[Collector]:
    state = Collector()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY_BYTES))
            if state.mode == "hang":
                state.hung += 1
                state.release.wait(30)
                return  # no answer: the client's own timeout ends it
            if state.mode == "fail":
                self._reply(503, b"")
                return
            try:
                answer = state.received.accept(self.path, body, self.headers.get("Content-Encoding"))
            except ValueError:
                self._reply(400, b"")
                return
            self._reply(200, answer)

        def _reply(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def down_url() -> str:
    """A loopback URL nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
