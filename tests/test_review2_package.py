"""Review 2: `--tab-url` validation. Every --tab-url the build accepts must give a manifest that validates against
Microsoft's schema and a `webApplicationInfo.resource` Entra accepts as an Application ID URI; anything else must be
a PackageError (exit 2), not a package Teams refuses at upload (or an SSO that never works)."""

import json
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

from devserver.package import PackageError, build_teams
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
