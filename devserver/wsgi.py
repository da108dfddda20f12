"""Serving a WSGI app on a thread with werkzeug, with an access log that never shows a query string."""

import json
import re
import sys
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .network import listen

_QUERY = re.compile(r"\?[^\s'\"]*")


class AccessLog(WSGIRequestHandler):
    """Werkzeug's handler, logging method, path and status only: a token could sit in a query string. Control
    characters are escaped, as werkzeug's own log_request escapes them.

    Requests too malformed to reach an app (a header line over 64 KiB, a bad request line) are answered by
    http.server itself: as JSON here too, like every other error.
    """

    error_content_type = "application/json"
    error_message_format = '{"error": "bad_request", "message": "%(message)s (%(code)d)."}'

    def make_environ(self) -> Any:
        """A repeated header as the Functions host (ASP.NET's `StringValues`) passes it on: its non-empty values
        joined with ","; werkzeug would keep the empty ones."""
        environ = super().make_environ()
        for name in {name.lower() for name in self.headers if "_" not in name}:
            values = [value.replace("\r\n", "") for value in self.headers.get_all(name) or ()]
            key = name.upper().replace("-", "_")
            if len(values) > 1 and key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[f"HTTP_{key}"] = ",".join(value for value in values if value)
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0] if hasattr(self, "path") else "-"
        self.log("info", '"%s %s" %s', getattr(self, "command", None) or "-", path, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        """Every line, requests and errors alike: control characters escaped with werkzeug's own table (the one
        its log_request uses: ESC becomes the text `\\x1b`), so nothing a client sends reaches the terminal raw;
        then any query string left (in an error's message) is cut."""
        text = message % args if args else message
        text = _QUERY.sub("?…", text.translate(self._control_char_table))
        sys.stderr.write(f"{self.address_string()} - {text}\n")


class NoAccessLog(AccessLog):
    """Errors only: for load tests, where a line per request is noise and costs time."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def serve(app: Any, host: str, port: int, *, access_log: bool = True) -> BaseWSGIServer:
    """Bind now (so the port is known and in use), serve on a daemon thread; `server.shutdown()` stops it.

    Raises OSError when the address cannot be bound (a busy port: errno EADDRINUSE), for the caller to explain;
    werkzeug would print its own message and exit.
    """
    handler = AccessLog if access_log else NoAccessLog
    with listen(host, port) as sock:  # werkzeug serves a duplicate of this socket
        server = make_server(host, port, app, threaded=True, request_handler=handler, fd=sock.fileno())
    server.daemon_threads = True  # type: ignore[attr-defined]  # ThreadingMixIn: a hung request must not block exit
    threading.Thread(target=server.serve_forever, name=f"serve-{server.port}", daemon=True).start()
    return server


def json_error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps({"error": error, "message": message}),
        status=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


class BadBody(ValueError):
    """A dev endpoint's body is not the JSON object it takes: its message is the 400's."""


MAX_DEV_BODY_BYTES = 64 * 1024  # a dev endpoint's options are a few fields


def json_object_body(request: Request) -> dict[str, Any]:
    """A dev endpoint's JSON object body ({} when empty); BadBody otherwise."""
    if (request.content_length or 0) > MAX_DEV_BODY_BYTES:
        raise BadBody(f"The body is larger than {MAX_DEV_BODY_BYTES} bytes.")
    body = request.get_data(cache=False)
    if len(body) > MAX_DEV_BODY_BYTES:
        raise BadBody(f"The body is larger than {MAX_DEV_BODY_BYTES} bytes.")
    try:
        payload = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise BadBody("The body must be JSON.") from None
    if not isinstance(payload, dict):
        raise BadBody("The body must be a JSON object.")
    return payload
