"""`python -m devserver`: the function host (port 7071) and the Kaizala stand-in (port 7072) on 127.0.0.1.

The stand-in also plays Entra ID for a demo Teams tenant (devserver/entra.py), and the host trusts it: Teams tab
tokens work locally too.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from shared import telemetry
from shared.identity import TEAMS, Provider
from shared.settings import SettingsError, current_settings
from shared.settings.providers import auth_providers

from .cli import add_fault_arguments, cannot_bind, faults_from, port_number, wait_for_signal, warn_if_exposed
from .entra import add_entra_arguments
from .fleet import add_fleet_arguments, fleet_from
from .functions_host import INVOKE_MODES, FunctionAppError, load_app
from .kaizala import DEFAULT_PORT as DEFAULT_KAIZALA_PORT
from .kaizala import KaizalaStandIn
from .network import local_base, needs_loopback_listener, stand_in_base
from .otlp import Received
from .telemetry_page import export_here
from .wsgi import serve

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STAND_IN_URL = f"http://127.0.0.1:{DEFAULT_KAIZALA_PORT}/v1/users/me"
DEFAULT_TEAMS_AUTHORITY = f"http://127.0.0.1:{DEFAULT_KAIZALA_PORT}"
TEAMS_SETTINGS = ("TEAMS_AUTHORITY", "TEAMS_CLIENT_ID", "TEAMS_ALLOWED_TENANT_IDS")
PROVIDER_CHOICES = ("kaizala", "teams", "kaizala,teams")
DEFAULT_PROVIDERS = "kaizala,teams"  # locally, both: the card preview runs as a card and as a tab


def load_local_settings(root: Path) -> dict[str, Any]:
    """local.settings.json (or the .example beside it); its Values go into the environment, which wins."""
    for name in ("local.settings.json", "local.settings.json.example"):
        path = root / name
        if path.exists():
            try:
                settings = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise FunctionAppError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(settings, dict):
                raise FunctionAppError(f"{path}: must be a JSON object")
            values = settings.get("Values") or {}
            if not isinstance(values, dict):
                raise FunctionAppError(f"{path}: 'Values' must be an object")
            for key, value in values.items():
                os.environ.setdefault(key, str(value))
            return settings
    return {}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devserver", description=__doc__)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; the dev endpoints always stay loopback-only)",
    )
    parser.add_argument("--port", type=port_number, default=7071, help="function host port (0: any free port)")
    parser.add_argument(
        "--kaizala-port", type=port_number, default=DEFAULT_KAIZALA_PORT, help="Kaizala stand-in port (0: any)"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the function app folder")
    parser.add_argument("--no-access-log", action="store_true", help="log errors only, not every request")
    parser.add_argument(
        "--providers",
        choices=PROVIDER_CHOICES,
        default=None,
        help="which tokens the functions accept (sets AUTH_PROVIDERS; default: AUTH_PROVIDERS from the environment"
        " or local.settings.json, else kaizala,teams)",
    )
    parser.add_argument(
        "--invoke",
        choices=INVOKE_MODES,
        default="auto",
        help="worker: through azure-functions-runtime-v1, or azure-functions-runtime for a v2 app (Python 3.13+);"
        " direct: call the functions; auto (default): the worker library whenever the Python is 3.13+",
    )
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="the functions export their telemetry over OTLP to the stand-in, which shows it at /telemetry/"
        " (OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_* already set in the environment win)",
    )
    add_fault_arguments(parser)
    add_entra_arguments(parser)
    add_fleet_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    fleet = fleet_from(parser, args)  # None: one host in this process, as without --instances/--redis
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    access_log = not args.no_access_log

    try:
        local = load_local_settings(args.root)
    except FunctionAppError as exc:
        print(f"devserver: cannot start: {exc}", file=sys.stderr)
        return 2
    if fleet is not None:
        fleet.set_environment()
    host_settings = local.get("Host") or {}
    stand_in = KaizalaStandIn(faults=faults_from(args))
    try:
        kaizala_servers = [serve(stand_in, args.host, args.kaizala_port, access_log=access_log)]
        if needs_loopback_listener(args.host):  # the functions call the stand-in at a loopback URL
            kaizala_servers.append(serve(stand_in, "127.0.0.1", kaizala_servers[0].port, access_log=access_log))
    except OSError as exc:
        how = "make run KAIZALA_PORT=<port>, or python -m devserver --kaizala-port <port>"
        return cannot_bind("Kaizala stand-in", args.host, args.kaizala_port, exc, how)
    kaizala_port = kaizala_servers[0].port
    # Loopback URLs: the functions call the stand-in at one (settings allow plain http only to this machine), and
    # the banner prints ones that work from here whatever --host is.
    kaizala_base = stand_in_base(args.host, kaizala_port)
    point_at_the_stand_in(stand_in, kaizala_base, telemetry=args.telemetry)
    if args.providers is not None or not os.environ.get("AUTH_PROVIDERS", "").strip():
        os.environ["AUTH_PROVIDERS"] = args.providers or DEFAULT_PROVIDERS
    if TEAMS in providers_on():
        trust_the_teams_stand_in(stand_in, kaizala_base)
    for problem in settings_problems():
        print(
            f"devserver: WARNING: setting {problem}. Until it is fixed (in local.settings.json's Values or the "
            "environment) every request answers 500 server_misconfigured.",
            file=sys.stderr,
            flush=True,
        )
    origins = {o for o in str(host_settings.get("CORS", "")).split(",") if o.strip()}
    origins |= {kaizala_base, f"http://localhost:{kaizala_port}", f"http://127.0.0.1:{kaizala_port}"}
    try:
        app = load_app(args.root, origins, bool(host_settings.get("CORSCredentials", False)), args.invoke)
    except FunctionAppError as exc:
        print(f"devserver: cannot start: {exc}", file=sys.stderr)
        return 2
    if fleet is not None:
        credentials = bool(host_settings.get("CORSCredentials", False))
        return fleet.run(
            app.functions,
            origins=origins,
            cors_credentials=credentials,
            kaizala_base=kaizala_base,
            kaizala_servers=kaizala_servers,
            stand_in=stand_in,
            banner=banner,
        )
    try:
        api_server = serve(app, args.host, args.port, access_log=access_log)
    except OSError as exc:
        return cannot_bind(
            "function host", args.host, args.port, exc, "make run PORT=<port>, or python -m devserver --port <port>"
        )
    api_base = local_base(args.host, api_server.port)
    stand_in.api_url = api_base
    warn_if_exposed(args.host, kaizala_base)
    print(banner(app.functions, api_base, kaizala_base, stand_in, app.invoked_how), flush=True)

    wait_for_signal()
    print("devserver: stopping", file=sys.stderr, flush=True)
    api_server.shutdown()
    telemetry.shutdown()  # the last figures reach the stand-in while it still listens
    for server in kaizala_servers:
        server.shutdown()
    app.close()
    return 0


def point_at_the_stand_in(stand_in: KaizalaStandIn, kaizala_base: str, *, telemetry: bool) -> None:
    """The functions call the stand-in's users/me (unless KAIZALA_IDENTITY_URL names another), and with
    `telemetry` export to it, which shows the figures at /telemetry/."""
    if os.environ.get("KAIZALA_IDENTITY_URL", DEFAULT_STAND_IN_URL) == DEFAULT_STAND_IN_URL:
        os.environ["KAIZALA_IDENTITY_URL"] = f"{kaizala_base}/v1/users/me"
    if telemetry:
        stand_in.telemetry = Received()
        export_here(kaizala_base)


def providers_on() -> tuple[Provider, ...]:
    """AUTH_PROVIDERS as the functions read it; none when it is malformed (settings_problems reports that)."""
    try:
        return auth_providers(os.environ.get("AUTH_PROVIDERS"))
    except SettingsError:
        return ()


def trust_the_teams_stand_in(stand_in: KaizalaStandIn, kaizala_base: str) -> None:
    """Teams on, against the Entra ID stand-in, through each Teams setting the environment and the settings file
    leave unset or blank (blank too: a settings file listing them empty would otherwise leave Teams off). Like
    KAIZALA_IDENTITY_URL, TEAMS_AUTHORITY naming the stand-in's default address follows it to its actual port;
    any other value (say Microsoft's own authority, for a real tenant) is kept."""
    demo = {
        "TEAMS_AUTHORITY": kaizala_base,
        "TEAMS_CLIENT_ID": stand_in.entra.client_id,
        "TEAMS_ALLOWED_TENANT_IDS": stand_in.entra.tenant_id,
    }
    for name, value in demo.items():
        if not os.environ.get(name, "").strip():
            os.environ[name] = value
    if os.environ["TEAMS_AUTHORITY"].strip().rstrip("/") == DEFAULT_TEAMS_AUTHORITY:
        os.environ["TEAMS_AUTHORITY"] = kaizala_base


def settings_problems() -> list[str]:
    """Every missing or malformed setting, as the functions will read them from this process's environment.

    The settings stop at their first problem, so each one found is set aside (unset: its default; then `*`, for a
    required list) and the check runs again; the environment is restored before returning.
    """
    problems: list[str] = []
    saved: dict[str, str | None] = {}
    fallbacks: dict[str, list[str | None]] = {}
    try:
        while (error := _settings_error()) is not None:
            setting = getattr(error, "setting", None)
            if setting not in fallbacks:
                problems.append(error.detail)
            if not isinstance(setting, str):
                break  # the error does not say which setting: report it alone
            if setting not in fallbacks:
                saved[setting] = os.environ.get(setting)
            left = fallbacks.setdefault(setting, [None, "*"])
            if not left:
                break  # no way round this one: the rest are checked once it is fixed
            _set_env(setting, left.pop(0))
    finally:
        for name, value in saved.items():
            _set_env(name, value)
    return problems


def _settings_error() -> SettingsError | None:
    try:
        current_settings()
    except SettingsError as error:
        return error
    return None


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def banner(
    functions: Any, api_base: str, kaizala_base: str, stand_in: KaizalaStandIn, how: str = "by calling main directly"
) -> str:
    """`how`: how requests reach the functions (FunctionApp.invoked_how)."""
    providers = providers_on()
    teams_only = providers == (TEAMS,)
    token, _ = stand_in.entra.mint() if teams_only else stand_in.mint()
    user = "a Teams user" if teams_only else stand_in.users[stand_in.default_user]["name"]
    lines = [
        "",
        f"Functions (Python {sys.version.split()[0]}, invoked {how}; AUTH_PROVIDERS={','.join(providers)}):",
        "",
    ]
    for function in functions:
        lines.append(f"        {function.name}: [{','.join(function.methods)}] {api_base}/{function.route}")
        lines.append("")
    lines += [
        f"Kaizala stand-in:  {kaizala_base}/v1/users/me  (mint tokens: POST {kaizala_base}/v1/dev/tokens)",
        f"Card preview:      {kaizala_base}/card/  (as a Teams tab: {kaizala_base}/card/?host=teams)",
        f"Entra ID stand-in: {kaizala_base}/{stand_in.entra.tenant_id}/discovery/v2.0/keys  (Teams tab tokens: POST "
        f"{kaizala_base}/v1/dev/teams-tokens)",
        f"Telemetry:         {kaizala_base}/telemetry/  (the functions' OTLP export, received here)"
        if stand_in.telemetry is not None
        else "Telemetry:         off (--telemetry shows the figures at the stand-in's /telemetry/)",
        "Teams settings:    " + " ".join(f"{name}={os.environ.get(name, '')}" for name in TEAMS_SETTINGS)
        if TEAMS in providers
        else "Teams:             off (AUTH_PROVIDERS does not name teams)",
        "",
        f"A demo token for {user} (valid 30 minutes; dev only):",
        f"  export TOKEN={token}",
        f'  curl -s -H "Authorization: Bearer $TOKEN" {api_base}/api/ValidateToken',
        f'  curl -s -H "Authorization: Bearer $TOKEN" "{api_base}/api/ProtectedApi?category=coffee"',
        f"  curl -s -X POST {kaizala_base}/v1/dev/tokens   # a fresh token",
        f"  curl -s -X POST {kaizala_base}/v1/dev/teams-tokens   # a Teams tab token (from the Entra ID stand-in)",
        "",
        f"devserver ready: api={api_base} kaizala={kaizala_base} (Ctrl-C to stop)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
