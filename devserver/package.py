"""Build the sample's packages with the production URLs filled in: the Kaizala card and the Microsoft Teams app.

    python -m devserver.package --api-url https://<app>.azurewebsites.net [--kasclient KASClient.js]
        [--tab-url https://<tab host>/productpicker/index.html] [--teams-client-id <app registration's client id>]

Writes `build/productpicker.zip` (the Kaizala card), `build/teams-tab/` (the tab's page: host this folder on any
HTTPS host, e.g. an Azure Storage static website) and `build/productpicker-teams.zip` (the Teams app package:
`manifest.json` and the two icons, for upload to Teams).

Kaizala's rules: a flat ZIP (every file at the root), at most 1 MB, nothing loaded from outside the package
except the https URLs listed in the manifest's `externalUrls`. Teams' rules: a flat ZIP of the manifest and its
icons; the page itself is hosted elsewhere and loads nothing at run time from a CDN (teams-js is copied in from
npm, `teams/node_modules`, installed by `npm ci` in `teams/`, which `make package` runs).
"""

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from .kaizala import CARD_DIR

MAX_PACKAGE_BYTES = 1024 * 1024
PLACEHOLDER = "https://YOUR-FUNCTION-APP.azurewebsites.net"
CARD_FILES = ("package.json", "AppModel.json", "index.html", "app.js", "app.css", "config.js", "icon.png")

TEAMS_DIR = CARD_DIR.parent / "teams"
TEAMS_JS_NAME = "MicrosoftTeams.min.js"  # teams-js's UMD bundle: defines window.microsoftTeams
TEAMS_JS_PACKAGE = "@microsoft/teams-js"
TAB_FILES = ("index.html", "app.js", "app.css", "config.js")
TEAMS_PACKAGE_FILES = ("manifest.json", "color.png", "outline.png")
TAB_URL_PLACEHOLDER = "https://YOUR-TAB-HOST.example.com/productpicker/index.html"
DEMO_TEAMS_CLIENT_ID = "6a2b9c4d-1e3f-4a5b-8c7d-0e9f1a2b3c4d"  # the local Entra stand-in's demo app registration
GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# Each package keeps only its own host's SDK line of card/index.html.
SCRIPT_TAGS = {"kaizala": '<script src="KASClient.js"></script>', "teams": f'<script src="{TEAMS_JS_NAME}"></script>'}


class PackageError(Exception):
    pass


def api_origin(api_url: str) -> str:
    parts = urlsplit(api_url.strip())
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise PackageError("--api-url must be an https URL such as https://contoso-cards.azurewebsites.net")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise PackageError("--api-url is the app's origin only (no path, query or fragment)")
    return f"https://{parts.netloc}"


def without_script(page: str, host: str, source: Path) -> str:
    """card/index.html without the other host's SDK line (it would only be a missing file there)."""
    tag = SCRIPT_TAGS[host]
    lines = page.splitlines(keepends=True)
    matching = [line for line in lines if line.strip() == tag]
    if len(matching) != 1:
        raise PackageError(f"{source} must hold the line {tag} exactly once")
    return "".join(line for line in lines if line.strip() != tag)


def configured(card_dir: Path, origin: str) -> bytes:
    config = (card_dir / "config.js").read_text(encoding="utf-8")
    if PLACEHOLDER not in config:
        raise PackageError(f"{card_dir / 'config.js'} no longer holds the placeholder {PLACEHOLDER}")
    return config.replace(PLACEHOLDER, origin).encode()


def build(api_url: str, out: Path, card_dir: Path = CARD_DIR, kasclient: Path | None = None) -> list[str]:
    """Write the Kaizala card package to `out`; returns warnings (e.g. KASClient.js not included)."""
    origin = api_origin(api_url)
    warnings = []
    manifest = json.loads((card_dir / "package.json").read_text(encoding="utf-8"))
    manifest["externalUrls"] = [{"url": origin}]
    files: dict[str, bytes] = {name: (card_dir / name).read_bytes() for name in CARD_FILES}
    files["package.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    files["config.js"] = configured(card_dir, origin)
    page = files["index.html"].decode()
    files["index.html"] = without_script(page, "teams", card_dir / "index.html").encode()
    sdk = kasclient or card_dir / "KASClient.js"
    if sdk.is_file():
        files["KASClient.js"] = sdk.read_bytes()
    else:
        warnings.append("KASClient.js is not in the package: add Microsoft's SDK file (--kasclient) before upload")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    if out.stat().st_size > MAX_PACKAGE_BYTES:
        out.unlink()
        raise PackageError(f"the package is larger than Kaizala's {MAX_PACKAGE_BYTES} bytes")
    return warnings


# --- Microsoft Teams ---------------------------------------------------------------------------------------------


def tab_location(tab_url: str) -> tuple[str, str]:
    """(the tab page's URL, its host) from --tab-url."""
    parts = urlsplit(tab_url.strip())
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise PackageError("--tab-url must be an https URL such as https://contoso.z6.web.core.windows.net/index.html")
    if parts.query or parts.fragment:
        raise PackageError("--tab-url is where the tab's index.html is hosted (no query or fragment)")
    return f"https://{parts.netloc}{parts.path or '/'}", parts.hostname


def teams_js(teams_dir: Path = TEAMS_DIR) -> Path:
    """The installed teams-js UMD bundle, checked against the version teams/package.json pins."""
    installed = teams_dir / "node_modules" / TEAMS_JS_PACKAGE
    bundle = installed / "dist" / "umd" / TEAMS_JS_NAME
    pinned = json.loads((teams_dir / "package.json").read_text(encoding="utf-8"))["dependencies"][TEAMS_JS_PACKAGE]
    if not bundle.is_file():
        raise PackageError(f"{TEAMS_JS_PACKAGE} is not installed: run `npm ci` in {teams_dir} (make package does)")
    version = json.loads((installed / "package.json").read_text(encoding="utf-8"))["version"]
    if version != pinned:
        raise PackageError(
            f"{TEAMS_JS_PACKAGE} {version} is installed but {pinned} is pinned: run `npm ci` in {teams_dir}"
        )
    return bundle


def build_teams(
    api_url: str,
    out: Path,
    tab_dir: Path,
    *,
    tab_url: str = TAB_URL_PLACEHOLDER,
    client_id: str = DEMO_TEAMS_CLIENT_ID,
    card_dir: Path = CARD_DIR,
    teams_dir: Path = TEAMS_DIR,
) -> list[str]:
    """Write the tab's page to `tab_dir` and the Teams app package to `out`; returns warnings (placeholders)."""
    origin = api_origin(api_url)
    content_url, tab_host = tab_location(tab_url)
    client_id = client_id.strip().lower()
    if not GUID.fullmatch(client_id):
        raise PackageError("--teams-client-id must be the app registration's client id (a GUID)")
    warnings = []
    if tab_url == TAB_URL_PLACEHOLDER:
        warnings.append(
            f"the tab URL is the placeholder {TAB_URL_PLACEHOLDER}: pass --tab-url (where you host {tab_dir}/)"
        )
    if client_id == DEMO_TEAMS_CLIENT_ID:
        warnings.append(
            f"the Teams client id is the local stand-in's demo {DEMO_TEAMS_CLIENT_ID}: pass --teams-client-id "
            "(your Entra app registration's)"
        )

    page: dict[str, bytes] = {name: (card_dir / name).read_bytes() for name in TAB_FILES}
    page["config.js"] = configured(card_dir, origin)
    page["index.html"] = without_script(page["index.html"].decode(), "kaizala", card_dir / "index.html").encode()
    page[TEAMS_JS_NAME] = teams_js(teams_dir).read_bytes()
    tab_dir.mkdir(parents=True, exist_ok=True)
    for name, content in page.items():
        (tab_dir / name).write_bytes(content)

    manifest = json.loads((teams_dir / "manifest.json").read_text(encoding="utf-8"))
    for tab in manifest["staticTabs"]:
        tab["contentUrl"] = content_url
    manifest["validDomains"] = [tab_host]
    manifest["webApplicationInfo"] = {"id": client_id, "resource": f"api://{tab_host}/{client_id}"}
    package: dict[str, bytes] = {name: (teams_dir / name).read_bytes() for name in TEAMS_PACKAGE_FILES}
    package["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(package):
            archive.writestr(name, package[name])
    return warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devserver.package", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True, help="the function app's https origin")
    parser.add_argument("--kasclient", type=Path, help="path to Microsoft's KASClient.js (default: card/KASClient.js)")
    parser.add_argument("--out", type=Path, default=Path("build/productpicker.zip"))
    parser.add_argument("--tab-url", default=TAB_URL_PLACEHOLDER, help="the https URL the tab page is hosted at")
    parser.add_argument(
        "--teams-client-id", default=DEMO_TEAMS_CLIENT_ID, help="the Entra app registration's client id (a GUID)"
    )
    parser.add_argument("--teams-out", type=Path, default=Path("build/productpicker-teams.zip"))
    parser.add_argument("--tab-dir", type=Path, default=Path("build/teams-tab"), help="where the tab page is written")
    args = parser.parse_args(argv)
    try:
        warnings = build(args.api_url, args.out, kasclient=args.kasclient)
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes): the Kaizala card")
        warn(warnings)
        warnings = build_teams(
            args.api_url, args.teams_out, args.tab_dir, tab_url=args.tab_url, client_id=args.teams_client_id
        )
        print(f"wrote {args.tab_dir}/: the Teams tab's page, to host at {tab_location(args.tab_url)[0]}")
        print(f"wrote {args.teams_out} ({args.teams_out.stat().st_size} bytes): the Teams app package")
        warn(warnings)
    except (PackageError, OSError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 2
    return 0


def warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
