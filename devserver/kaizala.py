"""A local stand-in for Kaizala's identity side, as Azurite stands in for Azure Storage (dev-only).

- `GET /v1/users/me` with header `accessToken`: the token's user, or 401 JSON.
- `POST /v1/dev/tokens` `{"userId", "actionPackageId", "ttlSeconds"}` (all optional): mints a token, 201.
- `GET /v1/dev/users`: the demo users. `GET|PUT|DELETE /v1/dev/faults`: fault injection. `GET /v1/dev/stats`.
- `/card/`: a preview of the sample card, calling the local function host.
- Entra ID for a demo Teams tenant (devserver/entra.py): discovery, signing keys, `POST /v1/dev/teams-tokens`.

Tokens are real HS256 JWTs signed with a secret made fresh for each process, living 30 minutes by default.
Run alone with `python -m devserver.kaizala [--port 7072]`.
"""

import argparse
import html
import json
import random
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import jwt
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect, send_from_directory
from werkzeug.wrappers import Request, Response

from . import telemetry_page
from .entra import DISCOVERY_ENDPOINTS, EntraStandIn, add_entra_arguments
from .entra import url_rules as entra_url_rules
from .network import dev_request_refusal, needs_loopback_listener, stand_in_base
from .otlp import Received
from .wsgi import BadBody, json_error, json_object_body, serve

HERE = Path(__file__).resolve().parent
DEMO_FILE = HERE / "demo_users.json"
CARD_DIR = HERE.parent / "card"
PREVIEW_DIR = HERE / "preview"
DEFAULT_PORT = 7072
DEFAULT_TOKEN_TTL = 1800
# The preview's ?api= (a JavaScript regex literal): a plain-http function host on a loopback address only.
_API_ON_THIS_MACHINE = r"/^http:\/\/(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(:\d{1,5})?\/?$/"
MAX_TOKEN_TTL = 24 * 3600


@dataclass
class Faults:
    """What `GET /v1/users/me` does wrong, and how often. Rates are fractions of calls; their sum is at most 1.

    `entra_down` is the Entra ID stand-in's only fault: its discovery and keys endpoints drop every connection.
    The two sides never share a fault, so a test breaks exactly the identity provider it means to.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503  # 500, 503 or 429 (429 carries Retry-After)
    malformed_rate: float = 0.0  # 200 whose body is not JSON
    missing_id_rate: float = 0.0  # 200 JSON without "id"
    truncate_rate: float = 0.0  # body cut short, then the connection closes
    drop_rate: float = 0.0  # the connection closes with no answer
    hang_rate: float = 0.0  # no answer for hang_seconds
    hang_seconds: float = 30.0
    entra_down: bool = False  # Entra ID unreachable: openid-configuration and keys drop the connection

    RATES = ("error_rate", "malformed_rate", "missing_id_rate", "truncate_rate", "drop_rate", "hang_rate")
    SWITCHES = ("entra_down",)
    MAX_DELAY_MS = 600_000.0  # ten minutes: any wait the stand-in can actually sleep (and NaN/inf are refused)

    def _most(self, name: str) -> float:
        if name in self.RATES:
            return 1.0
        if name == "hang_seconds":
            return self.MAX_DELAY_MS / 1000
        return self.MAX_DELAY_MS if name.endswith("_ms") else 1000.0

    def validated(self) -> "Faults":
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in self.SWITCHES:
                if not isinstance(value, bool):
                    raise ValueError(f"{item.name} must be true or false")
            elif (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= self._most(item.name)
            ):
                raise ValueError(f"{item.name} must be a number from 0 to {self._most(item.name):g}")
        if self.error_status not in (429, 500, 502, 503, 504):
            raise ValueError("error_status must be 429, 500, 502, 503 or 504")
        if sum(getattr(self, name) for name in self.RATES) > 1:
            raise ValueError("the rates add up to more than 1")
        return self

    def draw(self, rng: random.Random) -> str | None:
        """The fault for one call, or None for a normal answer."""
        point = rng.random()
        for name in self.RATES:
            point -= getattr(self, name)
            if point < 0:
                return name.removesuffix("_rate")
        return None

    def delay(self, rng: random.Random) -> float:
        return max(0.0, self.latency_ms + rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000


class KaizalaStandIn:
    def __init__(
        self,
        *,
        api_url: str = "http://127.0.0.1:7071",
        token_ttl: int = DEFAULT_TOKEN_TTL,
        faults: Faults | None = None,
        demo_file: Path = DEMO_FILE,
        card_dir: Path = CARD_DIR,
    ) -> None:
        demo = json.loads(demo_file.read_text(encoding="utf-8"))
        self.action_package_id: str = demo["actionPackageId"]
        self.users: dict[str, dict[str, str]] = {user["id"]: user for user in demo["users"]}
        self.default_user = demo["users"][0]["id"]
        self.entra = EntraStandIn(demo["teams"])
        self.api_url = api_url
        self.token_ttl = token_ttl
        self.faults = (faults or Faults()).validated()
        self.card_dir = card_dir
        self.stats: Counter[str] = Counter()
        self.telemetry: Received | None = None  # --telemetry: what the functions export, shown at /telemetry/
        self._secret = secrets.token_bytes(32)
        self._rng = random.Random()  # noqa: S311 - chooses faults, not secrets
        self._lock = threading.Lock()
        self.url_map = Map(
            [
                Rule("/", endpoint="home"),
                Rule("/v1/users/me", endpoint="users_me", methods=["GET"]),
                Rule("/v1/dev/tokens", endpoint="mint", methods=["POST"]),
                Rule("/v1/dev/users", endpoint="list_users", methods=["GET"]),
                Rule("/v1/dev/faults", endpoint="faults", methods=["GET", "PUT", "DELETE"]),
                Rule("/v1/dev/stats", endpoint="get_stats", methods=["GET", "DELETE"]),
                Rule("/v1/dev/pictures/<name>.svg", endpoint="picture", methods=["GET"]),
                Rule("/card/", endpoint="card", defaults={"name": "index.html"}),
                Rule("/card/<path:name>", endpoint="card"),
                *(Rule(path, endpoint="telemetry") for path in telemetry_page.RULES),
                *entra_url_rules(),
            ],
            strict_slashes=True,
        )

    # --- tokens ------------------------------------------------------------------------------------------------

    def mint(
        self, user_id: str | None = None, action_package_id: str | None = None, ttl: int | None = None
    ) -> tuple[str, int]:
        user_id = user_id or self.default_user
        if user_id not in self.users:
            raise KeyError(user_id)
        now = int(time.time())
        expires_at = now + (ttl if ttl is not None else self.token_ttl)
        claims = {
            "sub": user_id,
            "apid": action_package_id or self.action_package_id,
            "iat": now,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires_at

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises jwt.InvalidTokenError when forged, expired or malformed."""
        claims = jwt.decode(
            token, self._secret, algorithms=["HS256"], options={"require": ["sub", "apid", "exp", "iat"]}
        )
        if claims["sub"] not in self.users:
            raise jwt.InvalidTokenError("unknown user")
        return claims

    # --- WSGI --------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            rule, args = adapter.match(return_rule=True)
            dev_only = rule.rule.startswith("/v1/dev/") or rule.endpoint == "telemetry"
            refusal = dev_request_refusal(environ) if dev_only else None
            if refusal:
                response = json_error(403, "loopback_only", refusal)
            elif rule.endpoint == "telemetry":
                response = self.on_telemetry(request)
            elif rule.endpoint.startswith("entra."):
                response = self.on_entra(request, rule.endpoint.removeprefix("entra."), args)
            else:
                response = getattr(self, f"on_{rule.endpoint}")(request, **args)
        except HTTPException as exc:
            if exc.code in (301, 302, 308):
                return exc(environ, start_response)
            response = json_error(
                exc.code or 500, "not_found" if exc.code == 404 else "bad_request", exc.description or ""
            )
        return response(environ, start_response)

    def on_home(self, request: Request) -> Response:
        return redirect("/card/")

    def on_telemetry(self, request: Request) -> Response:
        if request.path == "/telemetry/":
            return telemetry_page.on_page(self.telemetry, request)
        if request.path == "/v1/dev/telemetry":
            return telemetry_page.on_summary(self.telemetry, request)
        return telemetry_page.on_otlp(self.telemetry, request)

    def on_users_me(self, request: Request) -> Response:
        fault = self.faults.draw(self._rng)
        delay = self.faults.delay(self._rng)
        with self._lock:
            self.stats["users_me"] += 1
            self.stats[f"fault_{fault}" if fault else "normal"] += 1
        if fault == "hang":
            delay = max(delay, self.faults.hang_seconds)
        if delay:
            time.sleep(delay)
        if fault == "drop":
            return self._drop(request)
        if fault == "error":
            status = self.faults.error_status
            headers = {"Retry-After": "2"} if status == 429 else {}
            return json_error(status, "unavailable", "Injected failure.", headers)
        if fault == "malformed":
            return Response(b'{"id": "half', status=200, mimetype="application/json")

        token = request.headers.get("accessToken")
        if not token:
            return json_error(401, "missing_token", "Send the token in the accessToken header.")
        try:
            claims = self.verify(token)
        except jwt.InvalidTokenError:
            return json_error(401, "invalid_token", "The token is invalid or expired.")
        user = self.users[claims["sub"]]
        identity = {
            "id": user["id"],
            "name": user["name"],
            "phoneNumber": user["phoneNumber"],
            "pictureUrl": f"{request.host_url}v1/dev/pictures/{user['id']}.svg",
            "actionPackageId": claims["apid"],
        }
        if fault == "missing_id":
            del identity["id"]
        body = json.dumps(identity).encode()
        if fault == "truncate":
            # A streamed body keeps our Content-Length: the client is promised all of it, gets half, then EOF.
            return Response(
                iter([body[: len(body) // 2]]),
                mimetype="application/json",
                headers={"Content-Length": str(len(body)), "Connection": "close"},
            )
        return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})

    def on_entra(self, request: Request, handler: str, args: Mapping[str, Any]) -> Response:
        """The Entra ID stand-in's endpoints. The two the API fetches count in the stats (entra_openid,
        entra_keys) and fail under entra_down; no Kaizala fault reaches them."""
        if handler in DISCOVERY_ENDPOINTS:
            down = self.faults.entra_down
            with self._lock:
                self.stats[f"entra_{handler}"] += 1
                if down:
                    self.stats["fault_entra_down"] += 1
            if down:
                return self._drop(request)
        answer: Response = getattr(self.entra, f"on_{handler}")(request, **args)
        return answer

    def _drop(self, request: Request) -> Response:
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        return Response(status=500)  # never reaches the client: the connection is gone

    def on_mint(self, request: Request) -> Response:
        try:
            payload = json_object_body(request)
        except BadBody as exc:
            return json_error(400, "invalid_request", str(exc))
        user_id, card, ttl = payload.get("userId"), payload.get("actionPackageId"), payload.get("ttlSeconds")
        if user_id is not None and not isinstance(user_id, str):
            return json_error(400, "invalid_request", "userId must be a string.")
        if card is not None and (not isinstance(card, str) or not card):
            return json_error(400, "invalid_request", "actionPackageId must be a non-empty string.")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL):
            return json_error(400, "invalid_request", f"ttlSeconds must be a whole number from 1 to {MAX_TOKEN_TTL}.")
        try:
            token, expires_at = self.mint(user_id, card, ttl)
        except KeyError:
            return json_error(404, "unknown_user", "No demo user has that id; GET /v1/dev/users lists them.")
        return Response(
            json.dumps({"token": token, "expiresAt": expires_at}),
            status=201,
            mimetype="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def on_list_users(self, request: Request) -> Response:
        users = [{"id": u["id"], "name": u["name"]} for u in self.users.values()]
        return Response(
            json.dumps({"actionPackageId": self.action_package_id, "users": users}), mimetype="application/json"
        )

    def on_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults = Faults()
        elif request.method == "PUT":
            try:
                changes = json_object_body(request)
                unknown = set(changes) - {item.name for item in fields(Faults)}
                if unknown:
                    raise ValueError(f"unknown fault {sorted(unknown)[0]!r}")
                self.faults = Faults(**{**asdict(self.faults), **changes}).validated()
            except (ValueError, TypeError) as exc:  # BadBody is a ValueError
                return json_error(400, "invalid_request", str(exc))
        return Response(json.dumps(asdict(self.faults)), mimetype="application/json")

    def on_get_stats(self, request: Request) -> Response:
        with self._lock:
            if request.method == "DELETE":
                self.stats.clear()
            return Response(json.dumps(dict(self.stats)), mimetype="application/json")

    def on_picture(self, request: Request, name: str) -> Response:
        user = self.users.get(name)
        if user is None:
            return json_error(404, "not_found", "No such picture.")
        initials = html.escape("".join(part[0] for part in user["name"].split()[:2]))
        hue = sum(name.encode()) % 360
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
            f'<circle cx="32" cy="32" r="32" fill="hsl({hue},55%,45%)"/>'
            '<text x="32" y="40" font-family="sans-serif" font-size="24" fill="#fff" text-anchor="middle">'
            f"{initials}</text>"
            "</svg>"
        )
        return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    def on_card(self, request: Request, name: str) -> Response:
        if name == "config.js":
            return Response(self._preview_config(), mimetype="text/javascript", headers={"Cache-Control": "no-store"})
        if name == "KASClient.js":
            return send_from_directory(PREVIEW_DIR, "KASClient.js", request.environ, max_age=0)
        if name == "MicrosoftTeams.min.js":
            # The real teams-js bundle when `npm ci` has run in teams/, kept off Microsoft's CDN, then the
            # preview's stand-in of its app.initialize and authentication.getAuthToken (the preview files say why).
            bundle = HERE.parent / "teams" / "node_modules" / "@microsoft" / "teams-js" / "dist" / "umd" / name
            script = (PREVIEW_DIR / "teams-preview.js").read_text(encoding="utf-8")
            if bundle.is_file():
                real = bundle.read_text(encoding="utf-8")
                head, map_comment, _ = real.rpartition("\n//# sourceMappingURL=")  # no map is served
                offline = (PREVIEW_DIR / "teams-offline.js").read_text(encoding="utf-8")
                script = "\n".join([offline, head if map_comment else real, script])
            return Response(script, mimetype="text/javascript", headers={"Cache-Control": "no-store"})
        return send_from_directory(self.card_dir, name, request.environ, max_age=0)

    def _preview_config(self) -> str:
        # The preview's API comes from devserver, or from the page's own ?api= parameter: a function host on this
        # machine only, since the preview sends it tokens it has just minted (a link must not send them elsewhere).
        return (
            "// Generated by the Kaizala stand-in for the card preview (dev only).\n"
            f"window.CARD_CONFIG = {{ apiBaseUrl: {json.dumps(self.api_url)}, preview: true }};\n"
            "(function () {\n"
            '  var api = new URLSearchParams(window.location.search).get("api");\n'
            f"  if (api && {_API_ON_THIS_MACHINE}.test(api)) {{\n"
            '    window.CARD_CONFIG.apiBaseUrl = api.replace(/\\/+$/, "");\n'
            "  }\n"
            "})();\n"
        )


def main(argv: list[str] | None = None) -> int:
    from .cli import (  # noqa: PLC0415 - cli imports this module
        add_fault_arguments,
        cannot_bind,
        faults_from,
        port_number,
        wait_for_signal,
        warn_if_exposed,
    )

    parser = argparse.ArgumentParser(prog="python -m devserver.kaizala", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (the dev endpoints stay loopback-only)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    parser.add_argument("--api-url", default="http://127.0.0.1:7071", help="the function host the card preview calls")
    add_fault_arguments(parser)
    add_entra_arguments(parser)
    args = parser.parse_args(argv)
    stand_in = KaizalaStandIn(api_url=args.api_url, faults=faults_from(args))
    try:
        servers = [serve(stand_in, args.host, args.port)]
        if needs_loopback_listener(args.host):
            servers.append(serve(stand_in, "127.0.0.1", servers[0].port))
    except OSError as exc:
        return cannot_bind("Kaizala stand-in", args.host, args.port, exc, "python -m devserver.kaizala --port <port>")
    base = stand_in_base(args.host, servers[0].port)
    warn_if_exposed(args.host, base)
    print(f"Kaizala stand-in: {base}/v1/users/me\nCard preview: {base}/card/", flush=True)
    print(f"devserver ready: kaizala={base} (Ctrl-C to stop)", flush=True)
    wait_for_signal()
    for server in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
