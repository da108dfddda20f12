"""Microsoft's published schemas, kept beside the checkout (`../shared`), and the tab's teams-js from npm.

A clone has no `../shared`: without a schema the tests that read it skip, saying which file is missing, where to
download it from and where to put it (docs/development.md has the commands). A bare `pytest` may run before
`npm ci` in `teams/`. With REQUIRE_SHARED=1 / REQUIRE_TEAMS_JS=1 (CI) they fail instead, as the browser test does
with REQUIRE_BROWSER.
"""

import os
from pathlib import Path

import pytest

from devserver.package import TEAMS_DIR, PackageError, teams_js

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

# Kaizala's schemas were published in Microsoft's Kaizala documentation (MicrosoftDocs/kaizala-docs on GitHub,
# folder Articles/Actions, CC BY 4.0) as Markdown pages holding the JSON in one code block. They were last changed
# in this commit and later removed from the repository (Kaizala is retired), so the links name the commit.
KAIZALA_DOCS = (
    "https://github.com/MicrosoftDocs/kaizala-docs/blob/41a93053d0a5acc2d6f613cbf237747d054a9ffd/Articles/Actions"
)
SOURCES = {
    "kaizala/package-manifest.schema.json": f"{KAIZALA_DOCS}/package_manifest_schema.md (the JSON in its code block)",
    "kaizala/app-model.schema.json": f"{KAIZALA_DOCS}/appModel_schema.md (the JSON in its code block)",
    "teams/MicrosoftTeams.schema.json": "https://developer.microsoft.com/en-us/json-schemas/teams/v1.29/MicrosoftTeams.schema.json",
}


def shared_file(relative: str) -> Path:
    """`../shared/<relative>`, one of SOURCES; skips (REQUIRE_SHARED=1: fails) when it is not there."""
    source = SOURCES[relative]  # a schema this module knows where to download from
    path = SHARED / relative
    if not path.is_file():
        where = (
            f"../shared/{relative} (beside the checkout: {path}) is missing: download it from {source} and put it"
            " there (docs/development.md, 'Microsoft's schemas', has the commands)"
        )
        if os.environ.get("REQUIRE_SHARED") == "1":
            pytest.fail(f"REQUIRE_SHARED=1 but {where}")
        pytest.skip(where)
    return path


def teams_js_bundle() -> Path:
    """teams-js's UMD bundle as `npm ci` installed it; skips (REQUIRE_TEAMS_JS=1: fails) when not installed."""
    try:
        return teams_js(TEAMS_DIR)
    except PackageError as exc:
        if os.environ.get("REQUIRE_TEAMS_JS") == "1":
            pytest.fail(f"REQUIRE_TEAMS_JS=1 but {exc}")
        pytest.skip(f"{exc} (make test runs it)")
