"""The Teams app package and the tab's page: manifest against Microsoft's schema, icons, teams-js from npm."""

import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

from devserver.package import (
    DEMO_TEAMS_CLIENT_ID,
    TAB_URL_PLACEHOLDER,
    TEAMS_DIR,
    TEAMS_JS_NAME,
    TEAMS_JS_PACKAGE,
    PackageError,
    build_teams,
    main,
)
from tests.shared_data import ROOT, shared_file, teams_js_bundle

API = "https://contoso-cards.azurewebsites.net"
TAB_URL = "https://contosotabs.z6.web.core.windows.net/productpicker/index.html"
CLIENT_ID = "0f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b"
SCHEMA_URL = "https://developer.microsoft.com/en-us/json-schemas/teams/v1.29/MicrosoftTeams.schema.json"


@dataclass
class Built:
    package: Path
    tab: Path
    warnings: list[str]

    def manifest(self) -> dict:
        with zipfile.ZipFile(self.package) as archive:
            manifest: dict = json.loads(archive.read("manifest.json"))
        return manifest


@pytest.fixture
def built(tmp_path: Path) -> Built:
    teams_js_bundle()
    package, tab = tmp_path / "teams.zip", tmp_path / "tab"
    warnings = build_teams(API, package, tab, tab_url=TAB_URL, client_id=CLIENT_ID)
    return Built(package, tab, warnings)


# --- the manifest ------------------------------------------------------------------------------------------------


def test_manifest_matches_microsofts_published_schema(built: Built) -> None:
    # ../shared/teams/MicrosoftTeams.schema.json, beside the checkout, is the file at SCHEMA_URL: without it this
    # skips, saying where to download it from (REQUIRE_SHARED=1: fails).
    schema = json.loads(shared_file("teams/MicrosoftTeams.schema.json").read_text())
    manifest = built.manifest()
    # The schema says draft-04, which is what its validator checks; it also uses `const` (manifestVersion) and
    # `if`/`then`, which only later drafts read: check with draft-07 too, so those are not silently ignored.
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft4Validator
    jsonschema.Draft4Validator(schema).validate(manifest)
    jsonschema.Draft7Validator(schema).validate(manifest)
    assert manifest["manifestVersion"] == "1.29"
    assert manifest["$schema"] == SCHEMA_URL


def test_the_schema_check_catches_a_wrong_manifest(built: Built) -> None:
    schema = json.loads(shared_file("teams/MicrosoftTeams.schema.json").read_text())
    for change in ({"manifestVersion": "1.17"}, {"id": "not-a-guid"}, {"accentColor": "blue"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(schema).validate({**built.manifest(), **change})


def test_web_application_info_tab_and_domains_follow_the_options(built: Built) -> None:
    manifest = built.manifest()
    assert manifest["webApplicationInfo"] == {
        "id": CLIENT_ID,
        "resource": f"api://contosotabs.z6.web.core.windows.net/{CLIENT_ID}",
    }
    assert [tab["contentUrl"] for tab in manifest["staticTabs"]] == [TAB_URL]
    assert manifest["validDomains"] == ["contosotabs.z6.web.core.windows.net"]
    assert built.warnings == []


def test_defaults_are_the_demo_values_with_a_warning(tmp_path: Path) -> None:
    teams_js_bundle()
    warnings = build_teams(API, tmp_path / "teams.zip", tmp_path / "tab")
    assert any(TAB_URL_PLACEHOLDER in warning and "--tab-url" in warning for warning in warnings)
    assert any(DEMO_TEAMS_CLIENT_ID in warning and "--teams-client-id" in warning for warning in warnings)
    with zipfile.ZipFile(tmp_path / "teams.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["webApplicationInfo"]["id"] == DEMO_TEAMS_CLIENT_ID


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tab_url", "http://contosotabs.example.com/index.html"),
        ("tab_url", "https://contosotabs.example.com/index.html?x=1"),
        ("tab_url", "https://user:pw@contosotabs.example.com/"),
        ("client_id", "api://contoso"),
        ("client_id", "6a2b9c4d1e3f4a5b8c7d0e9f1a2b3c4d"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, option: str, value: str) -> None:
    teams_js_bundle()
    with pytest.raises(PackageError):
        build_teams(API, tmp_path / "teams.zip", tmp_path / "tab", **{option: value})  # type: ignore[arg-type]


def test_package_is_flat_with_the_manifest_and_its_two_icons(built: Built) -> None:
    with zipfile.ZipFile(built.package) as archive:
        names = sorted(archive.namelist())
    assert names == ["color.png", "manifest.json", "outline.png"]
    icons = built.manifest()["icons"]
    assert {icons["color"], icons["outline"]} <= set(names)


# --- the icons ---------------------------------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGBA rows of an 8-bit RGBA, non-interlaced PNG (all Teams needs here)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    idat = b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0]
        chunks[kind] = body
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, color, _compression, _filter, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color, interlace) == (8, 6, 0)
    raw, stride, rows = zlib.decompress(idat), width * 4, []
    previous = bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up, corner = previous[i], previous[i - 4] if i >= 4 else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
                line[i] = (line[i] + near[2]) & 0xFF
        rows.append(bytes(line))
        previous = rows[-1]
    return width, height, rows


def test_icons_are_pngs_of_the_sizes_teams_asks(built: Built) -> None:
    with zipfile.ZipFile(built.package) as archive:
        color = png_pixels(archive.read("color.png"))
        outline = png_pixels(archive.read("outline.png"))
    assert color[:2] == (192, 192)
    assert outline[:2] == (32, 32)
    # The outline icon: white on transparent, and not empty.
    pixels = [row[i : i + 4] for row in outline[2] for i in range(0, len(row), 4)]
    assert all(pixel[3] == 0 or pixel[:3] == b"\xff\xff\xff" for pixel in pixels)
    assert any(pixel[3] == 0 for pixel in pixels)
    assert any(pixel[3] == 0xFF for pixel in pixels)
    # The color icon is opaque (Teams shows it on any background).
    assert all(row[i + 3] == 0xFF for row in color[2] for i in range(0, len(row), 4))


# --- the tab's page ----------------------------------------------------------------------------------------------


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.inline = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            source = dict(attrs).get("src")
            if source is None:
                self.inline += 1
            else:
                self.sources.append(source)


def test_tab_page_carries_teams_js_and_loads_nothing_off_site(built: Built) -> None:
    assert sorted(path.name for path in built.tab.iterdir()) == sorted(
        ["index.html", "app.js", "app.css", "config.js", TEAMS_JS_NAME]
    )
    bundle = built.tab / TEAMS_JS_NAME
    assert bundle.read_bytes() == teams_js_bundle().read_bytes()
    assert b".microsoftTeams=" in bundle.read_bytes()  # the UMD bundle defines window.microsoftTeams
    scripts = Scripts()
    page = (built.tab / "index.html").read_text()
    scripts.feed(page)
    assert scripts.sources == [TEAMS_JS_NAME, "config.js", "app.js"]
    for source in scripts.sources:
        parts = urlsplit(source)
        assert not parts.scheme, source  # no https://
        assert not parts.netloc, source  # no protocol-relative //
        assert (built.tab / source).is_file()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert "KASClient.js" not in scripts.sources
    config = (built.tab / "config.js").read_text()
    assert json.dumps(API) in config
    assert "YOUR-FUNCTION-APP" not in config


def test_teams_js_is_pinned_exactly_and_locked() -> None:
    pinned = json.loads((TEAMS_DIR / "package.json").read_text())["dependencies"][TEAMS_JS_PACKAGE]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), pinned
    assert pinned.startswith("2.")  # app.initialize / authentication.getAuthToken as Promises
    lock = json.loads((TEAMS_DIR / "package-lock.json").read_text())
    assert lock["packages"][f"node_modules/{TEAMS_JS_PACKAGE}"]["version"] == pinned
    assert lock["packages"][f"node_modules/{TEAMS_JS_PACKAGE}"]["integrity"].startswith("sha512-")


def test_without_teams_js_installed_the_build_says_how_to_get_it(tmp_path: Path) -> None:
    teams = tmp_path / "teams"
    teams.mkdir()
    for name in ("package.json", "manifest.json", "color.png", "outline.png"):
        (teams / name).write_bytes((TEAMS_DIR / name).read_bytes())
    with pytest.raises(PackageError, match="npm ci"):
        build_teams(API, tmp_path / "teams.zip", tmp_path / "tab", teams_dir=teams)


def test_node_modules_and_the_tab_sources_are_never_deployed() -> None:
    ignored = (ROOT / ".funcignore").read_text().split()
    assert {"teams", "node_modules", "card", "build"} <= set(ignored)


def test_make_package_builds_all_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teams_js_bundle()
    card, teams, tab = tmp_path / "card.zip", tmp_path / "teams.zip", tmp_path / "tab"
    code = main(
        [
            *("--api-url", API, "--out", str(card), "--teams-out", str(teams), "--tab-dir", str(tab)),
            *("--tab-url", TAB_URL, "--teams-client-id", CLIENT_ID.upper()),
        ]
    )
    assert code == 0
    assert card.is_file()
    assert teams.is_file()
    assert (tab / "index.html").is_file()
    with zipfile.ZipFile(teams) as archive:
        assert json.loads(archive.read("manifest.json"))["webApplicationInfo"]["id"] == CLIENT_ID
    err = capsys.readouterr().err
    assert "--tab-url" not in err
    assert "--teams-client-id" not in err


def test_the_default_client_id_is_the_stand_ins_demo_app_registration() -> None:
    demo = json.loads((ROOT / "devserver" / "demo_users.json").read_text())
    assert demo["teams"]["clientId"] == DEMO_TEAMS_CLIENT_ID
