"""The card package: manifest and app model against Kaizala's published schemas, and the upload ZIP."""

import json
import re
import zipfile
from pathlib import Path

import jsonschema
import pytest

from devserver.package import MAX_PACKAGE_BYTES, PackageError, build
from tests.shared_data import shared_file

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "card"


def schema(name: str) -> dict:
    """One of Kaizala's published schemas from ../shared/kaizala, beside the checkout: from Microsoft's Kaizala
    documentation (MicrosoftDocs/kaizala-docs, Articles/Actions; tests/shared_data.py has the URLs). Skips without
    it, saying where to download it from; REQUIRE_SHARED=1 fails."""
    return json.loads(shared_file(f"kaizala/{name}").read_text())


def test_manifest_matches_kaizalas_schema() -> None:
    manifest_schema = schema("package-manifest.schema.json")
    # The published schema types externalUrls as one object; Kaizala's own docs use an array of them.
    url_object = manifest_schema["properties"]["externalUrls"]
    manifest_schema["properties"]["externalUrls"] = {"type": "array", "items": url_object, "minItems": 1}
    manifest = json.loads((CARD / "package.json").read_text())
    jsonschema.validate(manifest, manifest_schema)
    assert re.fullmatch(r"[a-z0-9]+(\.[a-z0-9]+){2,}", manifest["id"])
    for view in ("CreationView", "ResponseView", "ResponseResultsView"):
        assert (CARD / manifest["views"][view]["sourceLocation"]).is_file()
    assert (CARD / manifest["icon"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_app_model_matches_kaizalas_schema() -> None:
    jsonschema.validate(json.loads((CARD / "AppModel.json").read_text()), schema("app-model.schema.json"))


def test_card_calls_the_sdk_and_sends_the_token_as_a_bearer_header() -> None:
    # The browser test proves the behaviour; this pins the SDK's own spelling, which a typo fix would break.
    script = (CARD / "app.js").read_text()
    assert "app.getIntegerationServiceTokenAsync(" in script
    assert '"Bearer " + accessToken' in script
    # teams-js v2's Promise API, not v1's callbacks.
    assert "app.initialize()" in script
    assert "authentication.getAuthToken()" in script


def test_demo_action_package_id_is_the_cards_and_is_allowed_by_the_example_settings() -> None:
    manifest = json.loads((CARD / "package.json").read_text())
    demo = json.loads((ROOT / "devserver" / "demo_users.json").read_text())
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    allowed = example["Values"]["KAIZALA_ALLOWED_ACTION_PACKAGE_IDS"].split(",")
    assert manifest["id"] == demo["actionPackageId"]
    assert demo["actionPackageId"] in allowed


def test_package_is_flat_small_and_points_at_the_api(tmp_path) -> None:
    sdk = tmp_path / "KASClient.js"
    sdk.write_text("// Microsoft's SDK would be here\n")
    out = tmp_path / "card.zip"
    warnings = build("https://contoso-cards.azurewebsites.net", out, kasclient=sdk)
    assert warnings == []
    assert out.stat().st_size <= MAX_PACKAGE_BYTES
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert all("/" not in name for name in names)
        assert {
            "package.json",
            "AppModel.json",
            "index.html",
            "app.js",
            "config.js",
            "icon.png",
            "KASClient.js",
        } <= set(names)
        manifest = json.loads(archive.read("package.json"))
        config = archive.read("config.js").decode()
        page = archive.read("index.html").decode()
        assert "MicrosoftTeams.min.js" not in names
    # The card loads Kaizala's SDK; the Teams tab's line is not in the card (nothing would answer it).
    assert '<script src="KASClient.js"></script>' in page
    assert 'src="MicrosoftTeams.min.js"' not in page
    assert manifest["externalUrls"] == [{"url": "https://contoso-cards.azurewebsites.net"}]
    assert '"https://contoso-cards.azurewebsites.net"' in config
    assert "YOUR-FUNCTION-APP" not in config


def test_package_warns_without_the_sdk(tmp_path) -> None:
    warnings = build("https://x.azurewebsites.net", tmp_path / "c.zip", kasclient=tmp_path / "absent.js")
    assert any("KASClient.js" in warning for warning in warnings)


@pytest.mark.parametrize("url", ["http://x.azurewebsites.net", "https://x.azurewebsites.net/api", "not a url"])
def test_package_refuses_non_https_origins(tmp_path, url: str) -> None:
    with pytest.raises(PackageError):
        build(url, tmp_path / "c.zip")
