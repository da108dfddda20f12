"""`--tab-url` validation. Every --tab-url the build accepts must give a manifest that validates against
Microsoft's schema and a `webApplicationInfo.resource` Entra accepts as an Application ID URI; anything else must be
a PackageError (exit 2), not a package Teams refuses at upload (or an SSO that never works)."""

import json
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

from devserver.package import PackageError, api_origin, build_teams, main, tab_location
from tests.shared_data import shared_file, teams_js_bundle

API = "https://contoso-cards.azurewebsites.net"
CLIENT_ID = "0f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b"
# A DNS host name: labels of letters, digits and hyphens (punycode for IDNs), no wildcard, no trailing dot.
HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


@pytest.mark.parametrize(
    "tab_url",
    [
        "https://*.contoso.com/index.html",  # a wildcard is no host: api://*.contoso.com/<id> is no Application ID URI
        "https://tab.contoso.com:abc/index.html",  # not a port (urlsplit keeps it in netloc; .port would raise)
        "https://tab.contoso.com:0/index.html",
        "https://[::1]/index.html",  # resource becomes api://::1/<id>
        "https://tab.contoso.com./index.html",  # trailing dot: validDomains "tab.contoso.com."
        "https://tab_contoso.com/index.html",  # "_" is not allowed in a host name
        "https://bücher.example/index.html",  # not punycode: validDomains/resource with non-ASCII
        "https://tab.contoso.com/a b/index.html",  # a raw space in contentUrl
        "https://tab.contoso.com/" + "a" * 3000,  # contentUrl over the schema's 2048 characters
    ],
)
def test_a_tab_url_teams_or_entra_cannot_use_is_refused(tmp_path: Path, tab_url: str) -> None:
    teams_js_bundle()
    # Microsoft's manifest schema from ../shared/teams, beside the checkout (tests/shared_data.py has its URL).
    schema = json.loads(shared_file("teams/MicrosoftTeams.schema.json").read_text())
    try:
        build_teams(API, tmp_path / "teams.zip", tmp_path / "tab", tab_url=tab_url, client_id=CLIENT_ID)
    except PackageError:
        return  # refused: what we want
    with zipfile.ZipFile(tmp_path / "teams.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    # Accepted: then it must at least be a manifest Teams takes, for a host Entra takes.
    jsonschema.Draft7Validator(schema).validate(manifest)
    (domain,) = manifest["validDomains"]
    assert HOST_NAME.fullmatch(domain), f"built with validDomains {domain!r} for --tab-url {tab_url!r}"
    content_url = manifest["staticTabs"][0]["contentUrl"]
    assert " " not in content_url
    assert urlsplit(content_url).port != 0  # urlsplit(...).port raises ValueError for "abc"


@pytest.mark.parametrize(
    ("tab_url", "content_url", "host"),
    [
        (
            "https://contosotabs.z6.web.core.windows.net/productpicker/index.html",
            None,
            "contosotabs.z6.web.core.windows.net",
        ),
        ("https://xn--bcher-kva.example/a%20b/index.html", None, "xn--bcher-kva.example"),  # punycode, %-encoded
        ("https://Tab.Contoso.com:8443/Tab/", "https://tab.contoso.com:8443/Tab/", "tab.contoso.com"),
        ("https://tab.contoso.com", "https://tab.contoso.com/", "tab.contoso.com"),
    ],
)
def test_a_usable_tab_url_is_kept(tab_url: str, content_url: str | None, host: str) -> None:
    assert tab_location(tab_url) == (content_url or tab_url, host)


@pytest.mark.parametrize(
    "api_url",
    ["https://*.azurewebsites.net", "https://app.azurewebsites.net:abc", "https://[::1]", "https://app_1.example.com"],
)
def test_an_api_url_of_no_dns_host_is_refused(api_url: str) -> None:
    with pytest.raises(PackageError, match="--api-url"):
        api_origin(api_url)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--tab-url", "https://tab_contoso.com/index.html"), ("--teams-client-id", "not-a-guid")],
)
def test_a_bad_option_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    # main() used to write the card's ZIP before checking the Teams options: a bad --tab-url left a new card beside
    # the previous build's Teams package. Every option is checked first now; an earlier build stays as it was.
    teams_js_bundle()
    card, teams, tab = tmp_path / "card.zip", tmp_path / "teams.zip", tmp_path / "tab"
    teams.write_bytes(b"the previous build")
    argv = [*("--api-url", API, "--out", str(card), "--teams-out", str(teams), "--tab-dir", str(tab))]
    code = main([*argv, option, value])
    assert code == 2
    assert option in capsys.readouterr().err
    assert not card.exists()
    assert not tab.exists()
    assert teams.read_bytes() == b"the previous build"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["teams.zip"]
