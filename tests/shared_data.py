"""Reference data the team keeps beside the checkout (`../shared`), and the tab's teams-js from npm.

Without them the tests that read them skip with a reason (a user's clone has no `../shared`; a bare `pytest`
may run before `npm ci` in `teams/`); with REQUIRE_SHARED=1 / REQUIRE_TEAMS_JS=1 (CI) they fail instead, as
the browser test does with REQUIRE_BROWSER.
"""

import os
from pathlib import Path

import pytest

from devserver.package import TEAMS_DIR, PackageError, teams_js

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def shared_file(relative: str) -> Path:
    """`../shared/<relative>`; skips (REQUIRE_SHARED=1: fails) when it is not there."""
    path = SHARED / relative
    if not path.is_file():
        if os.environ.get("REQUIRE_SHARED") == "1":
            pytest.fail(
                f"REQUIRE_SHARED=1 but {path} is missing: the team's reference data belongs beside the checkout"
            )
        pytest.skip(f"the team's reference data is not beside this checkout ({path})")
    return path


def teams_js_bundle() -> Path:
    """teams-js's UMD bundle as `npm ci` installed it; skips (REQUIRE_TEAMS_JS=1: fails) when not installed."""
    try:
        return teams_js(TEAMS_DIR)
    except PackageError as exc:
        if os.environ.get("REQUIRE_TEAMS_JS") == "1":
            pytest.fail(f"REQUIRE_TEAMS_JS=1 but {exc}")
        pytest.skip(f"{exc} (make test runs it)")
