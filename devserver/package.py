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
import io
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

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


# A URL Teams and Entra take: https, a DNS host name of LDH labels (internationalized names in their punycode
# form), an optional port 1-65535, a path of RFC 3986 characters (anything else percent-encoded), 2048 characters
# at most (the Teams manifest's contentUrl limit).
MAX_URL_LENGTH = 2048
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
PATH = re.compile(r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*")


def https_url(option: str, raw: str, example: str) -> tuple[str, str, str]:
    """(origin, host, path) of an https URL given as `option`; a PackageError naming the option otherwise."""
    url = raw.strip()
    if len(url) > MAX_URL_LENGTH:
        raise PackageError(f"{option} is {len(url)} characters long: at most {MAX_URL_LENGTH}")
    scheme, separator, rest = url.partition("://")
    if scheme.lower() != "https" or not separator:
        raise PackageError(f"{option} must be an https URL such as {example}")
    if "?" in rest or "#" in rest:
        raise PackageError(f"{option} takes no query or fragment")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if "@" in authority:
        raise PackageError(f"{option} takes no user name or password")
    if authority.startswith("["):
        raise PackageError(f"{option} needs a DNS host name, not an IP address")
    name, colon, port = authority.partition(":")
    host = name.lower()
    if colon and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise PackageError(f"{option}: the port {port!r} is not a number from 1 to 65535")
    check_host(option, host)
    if not PATH.fullmatch(path):
        raise PackageError(
            f"{option}: the path {path!r} holds characters a URL cannot (spaces, non-ASCII, ...): percent-encode them"
        )
    origin = f"https://{host}" + (f":{int(port)}" if colon else "")
    return origin, host, path


def check_host(option: str, host: str) -> None:
    """A DNS host name: LDH labels, punycode (xn--) labels that decode, at least two labels, not an IPv4 address."""
    if not host:
        raise PackageError(f"{option} has no host name")
    if not host.isascii():
        try:
            hint = f": use its punycode form {host.encode('idna').decode()}"
        except UnicodeError:
            hint = ""
        raise PackageError(f"{option}: the host name {host!r} is not ASCII{hint}")
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(LABEL.fullmatch(label) for label in labels):
        raise PackageError(
            f"{option}: {host!r} is not a DNS host name (two or more dot-separated labels of letters, digits and "
            "inner hyphens: no wildcard, no trailing dot, no underscore)"
        )
    if labels[-1].isdigit():
        raise PackageError(f"{option} needs a DNS host name, not an IP address")
    for label in labels:
        if label[2:4] != "--":
            continue
        try:
            valid = label.startswith("xn--") and label.encode().decode("idna").encode("idna").decode() == label
        except UnicodeError:
            valid = False
        if not valid:
            raise PackageError(f"{option}: the label {label!r} of {host!r} is not valid punycode")


def api_origin(api_url: str) -> str:
    example = "https://contoso-cards.azurewebsites.net"
    origin, _host, path = https_url("--api-url", api_url, example)
    if path.strip("/"):
        raise PackageError("--api-url is the app's origin only (no path, query or fragment)")
    return origin


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


@dataclass
class Card:
    """The Kaizala card package, built and checked in memory."""

    archive: bytes
    warnings: list[str]


def card_package(api_url: str, card_dir: Path = CARD_DIR, kasclient: Path | None = None) -> Card:
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
    archive = zipped(files)
    if len(archive) > MAX_PACKAGE_BYTES:
        raise PackageError(f"the package is larger than Kaizala's {MAX_PACKAGE_BYTES} bytes")
    return Card(archive, warnings)


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    return buffer.getvalue()


def write(path: Path, content: bytes) -> None:
    """Replace `path` whole: a failed write leaves the old file, never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def build(api_url: str, out: Path, card_dir: Path = CARD_DIR, kasclient: Path | None = None) -> list[str]:
    """Write the Kaizala card package to `out`; returns warnings (e.g. KASClient.js not included)."""
    card = card_package(api_url, card_dir, kasclient)
    write(out, card.archive)
    return card.warnings


# --- Microsoft Teams ---------------------------------------------------------------------------------------------


def tab_location(tab_url: str) -> tuple[str, str]:
    """(the tab page's URL, its host) from --tab-url."""
    origin, host, path = https_url("--tab-url", tab_url, "https://contoso.z6.web.core.windows.net/index.html")
    return origin + (path or "/"), host


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


@dataclass
class Teams:
    """The tab's page and the Teams app package, built and checked in memory."""

    page: dict[str, bytes]
    archive: bytes
    content_url: str
    warnings: list[str]


def teams_package(
    api_url: str,
    *,
    tab_url: str = TAB_URL_PLACEHOLDER,
    client_id: str = DEMO_TEAMS_CLIENT_ID,
    tab_dir: Path = Path("build/teams-tab"),
    card_dir: Path = CARD_DIR,
    teams_dir: Path = TEAMS_DIR,
) -> Teams:
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

    manifest = json.loads((teams_dir / "manifest.json").read_text(encoding="utf-8"))
    for tab in manifest["staticTabs"]:
        tab["contentUrl"] = content_url
    manifest["validDomains"] = [tab_host]
    manifest["webApplicationInfo"] = {"id": client_id, "resource": f"api://{tab_host}/{client_id}"}
    package: dict[str, bytes] = {name: (teams_dir / name).read_bytes() for name in TEAMS_PACKAGE_FILES}
    package["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return Teams(page, zipped(package), content_url, warnings)


def write_teams(teams: Teams, out: Path, tab_dir: Path) -> None:
    for name, content in teams.page.items():
        write(tab_dir / name, content)
    write(out, teams.archive)


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
    teams = teams_package(
        api_url, tab_url=tab_url, client_id=client_id, tab_dir=tab_dir, card_dir=card_dir, teams_dir=teams_dir
    )
    write_teams(teams, out, tab_dir)
    return teams.warnings


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
        # Every option is checked and both packages are built in memory first: a bad option writes nothing.
        card = card_package(args.api_url, kasclient=args.kasclient)
        teams = teams_package(args.api_url, tab_url=args.tab_url, client_id=args.teams_client_id, tab_dir=args.tab_dir)
        write(args.out, card.archive)
        print(f"wrote {args.out} ({len(card.archive)} bytes): the Kaizala card")
        warn(card.warnings)
        write_teams(teams, args.teams_out, args.tab_dir)
        print(f"wrote {args.tab_dir}/: the Teams tab's page, to host at {teams.content_url}")
        print(f"wrote {args.teams_out} ({len(teams.archive)} bytes): the Teams app package")
        warn(teams.warnings)
    except (PackageError, OSError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 2
    return 0


def warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
