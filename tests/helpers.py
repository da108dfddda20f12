"""Test helpers: requests as the Functions host builds them, JWTs, a registry of secrets, a real upstream."""

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.functions as func

if TYPE_CHECKING:
    from shared.cache.identity_cache import IdentityCache

# Every token and phone number a test creates: the log fixture fails a test whose logs contain any of them.
SECRETS: set[str] = set()

CARD_ID = "com.contoso.productpicker"
OTHER_CARD_ID = "com.fabrikam.othercard"


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` pass; its last answer."""
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def secret(value: str) -> str:
    SECRETS.add(value)
    return value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWT_HEADER_B64 = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())


def make_jwt(exp: float | None = None, *, payload: Any = None, ttl: float = 1800) -> str:
    """An unsigned-looking JWT (we never verify signatures locally: Kaizala does)."""
    if payload is None:
        payload = {"sub": str(uuid.uuid4()), "iat": int(time.time())}
        payload["exp"] = int(time.time() + ttl) if exp is None else exp
    header = JWT_HEADER_B64
    body = b64url(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    return secret(f"{header}.{body}.{b64url(uuid.uuid4().bytes)}")


def identity_payload(user_id: str = "user-1", card: str | None = CARD_ID, phone: str | None = None) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": f"Name of {user_id}",
        "phoneNumber": secret(phone or f"+1555{abs(hash(user_id)) % 10_000_000:07d}"),
        "pictureUrl": f"https://pictures.example/{user_id}.png",
        "actionPackageId": card,
    }


def request(
    method: str = "GET",
    *,
    function: str = "ValidateToken",
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> func.HttpRequest:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return func.HttpRequest(
        method, f"http://localhost:7071/api/{function}", headers=all_headers, params=dict(params or {}), body=body
    )


def json_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


# --- a real HTTP upstream on 127.0.0.1 -----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    drip: float = 0.0  # when set, the body goes out 4 bytes at a time with this pause between pieces


@dataclass
class Upstream:
    """A scripted users/me endpoint. `script(call_number, access_token)` returns the Reply for each call."""

    script: Callable[[int, str | None], Reply]
    url: str = ""
    calls: list[str | None] = field(default_factory=list)
    cookies: list[str | None] = field(default_factory=list)  # the Cookie header of each call
    connections: int = 0  # TCP connections accepted
    active: int = 0  # calls being answered now
    max_active: int = 0  # the most calls ever answered at once
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        return len(self.calls)


@contextmanager
def upstream_server(script: Callable[[int, str | None], Reply]) -> Iterator[Upstream]:
    upstream = Upstream(script)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with upstream.lock:
                upstream.connections += 1

        def do_GET(self) -> None:
            token = self.headers.get("accessToken")
            with upstream.lock:
                upstream.calls.append(token)
                upstream.cookies.append(self.headers.get("Cookie"))
                number = len(upstream.calls)
                upstream.active += 1
                upstream.max_active = max(upstream.max_active, upstream.active)
            try:
                self._answer(upstream.script(number, token))
            finally:
                with upstream.lock:
                    upstream.active -= 1

        def _answer(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not reply.drip:
                    self.wfile.write(body)
                for start in range(0, len(body) if reply.drip else 0, 4):
                    self.wfile.write(body[start : start + 4])
                    self.wfile.flush()
                    time.sleep(reply.drip)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # socketserver's default of 5 drops SYNs when many threads connect at once

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}/v1/users/me"
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


def _register_demo_phone_numbers() -> None:
    """The stand-in's demo users' phone numbers count as secrets too: no log may contain them."""
    demo = Path(__file__).resolve().parent.parent / "devserver" / "demo_users.json"
    for user in json.loads(demo.read_text())["users"]:
        secret(user["phoneNumber"])


_register_demo_phone_numbers()


def new_cache(timer: Callable[[], float] | None = None, max_calls: int = 8) -> "IdentityCache":
    """An identity cache of its own (its own slots), for tests that drive the cache directly."""
    from shared.cache.admission import Admission
    from shared.cache.identity_cache import IdentityCache

    return IdentityCache(ScriptedProvider(lambda _deadline: _no_fetch()), Admission(max_calls), timer=timer)


def _no_fetch() -> Any:
    raise AssertionError("lookup() sets the fetch")


def lookup(
    cache: "IdentityCache",
    fetch: Callable[[float], Any],
    *,
    token: str = "k",  # noqa: S107 - a cache key in tests, no secret
    seconds: float = 300,
    timeout: float = 2.0,
    max_calls: int | None = None,
    refresh_ahead: bool = True,
    local_seconds: float = float("inf"),
    not_after: Callable[[], float | None] | None = None,
) -> tuple[Any, str]:
    """`cache.get` with the settings a request would bring (as the composition root applies them)."""
    from shared.cache.entry import Lifetimes

    cache.provider = ScriptedProvider(fetch, not_after)
    cache.lifetimes = Lifetimes(seconds=seconds, local_seconds=local_seconds, refresh_ahead=refresh_ahead)
    cache.call_seconds = timeout
    if max_calls is not None:
        cache.admission.resize(max_calls)
    return cache.get(token, time.monotonic() + timeout)


def _scripted_provider() -> type:
    from shared.identity import KAIZALA
    from shared.providers.base import IdentityProvider

    class Scripted(IdentityProvider):
        """A provider whose answers a test scripts: `fetch(deadline)` for verify, `not_after()` for exp."""

        name = KAIZALA
        service = "Kaizala's identity service"
        renew = "Get a new one."
        max_token_length = 4096

        def __init__(self, fetch: Callable[[float], Any], not_after: Callable[[], float | None] | None = None):
            self.fetch = fetch
            self.not_after = not_after

        def expiry(self, token: str) -> float | None:
            return self.not_after() if self.not_after is not None else None

        def verify(self, token: str, deadline: float) -> Any:
            return self.fetch(deadline)

    return Scripted


ScriptedProvider = _scripted_provider()


def validate(token: str) -> func.HttpResponse:
    """ValidateToken's answer to `token` sent as a bearer token."""
    import ValidateToken

    return ValidateToken.main(request(token=token))


def assert_refused(response: func.HttpResponse, status: int, code: str) -> None:
    assert response.status_code == status, json_of(response)
    assert json_of(response)["error"] == code


def origin(upstream: Upstream) -> str:
    """The scheme://host:port of a stand-in server (TEAMS_AUTHORITY takes an origin)."""
    scheme, _, rest = upstream.url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
