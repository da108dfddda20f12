"""The README stays a ten-minute read and everything else lives in the documentation site (docs/, mkdocs.yml).

`make test` builds the site with `mkdocs build --strict` (a broken link between pages fails it); these checks
need no build: the README's size, every page in the site's nav, and wording that means nothing to a newcomer.
"""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_LINES = 300
MAX_WIDTH = 120
# A sentence a reader outside the project cannot follow: a tracker's issue number, or "the team" (whose?).
# "Teams", the Microsoft product, is fine: the word boundary keeps "the Teams tab" out.
UNFOLLOWABLE = re.compile(r"\bissues? ?#?[0-9]+|\bthe team\b|\bteam's\b", re.IGNORECASE)


def nav_pages(entries: list) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def mkdocs_config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_the_readme_is_at_most_300_lines_of_at_most_120_characters() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines: move detail to a page under docs/"
    wide = [number for number, line in enumerate(lines, 1) if len(line) > MAX_WIDTH]
    assert not wide, f"README.md lines over {MAX_WIDTH} characters: {wide}"


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    nav = nav_pages(mkdocs_config()["nav"])
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav)), "a page is listed twice"
    for required in ("index.md", "api.md", "settings.md", "security.md", "scaling-out.md", "teams.md"):
        assert required in nav, required
    for required in ("operations.md", "local-tools.md", "performance.md", "reliability.md", "development.md"):
        assert required in nav, required
    for required in ("card.md", "deploy.md", "publish.md", "v1-and-v2.md"):
        assert required in nav, required


def test_the_site_builds_strictly_into_an_ignored_folder() -> None:
    config = mkdocs_config()
    assert config["theme"]["name"] == "material"
    assert config["strict"] is True
    # A broken link or anchor between pages is a warning, which strict makes an error.
    assert {config["validation"][kind] for kind in ("unrecognized_links", "anchors", "not_found")} == {"warn"}
    # build/ is git-ignored and left out of the deployed package.
    assert config["site_dir"].startswith("build/")
    assert "build/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "build" in (ROOT / ".funcignore").read_text().splitlines()
    assert "mkdocs.yml" in (ROOT / ".funcignore").read_text().splitlines()


def test_no_readme_docs_or_test_text_names_an_issue_number_or_the_team() -> None:
    texts = [README, *sorted(DOCS.rglob("*.md")), *sorted((ROOT / "tests").glob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}"
        for path in texts
        if path != Path(__file__).resolve()  # the pattern itself
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for match in UNFOLLOWABLE.finditer(line)
    ]
    assert not found, found


def test_the_pattern_catches_what_it_should_and_spares_microsoft_teams() -> None:
    for caught in ("see issue 9", "Issue #12", "issues 3", "the team's schemas", "The team keeps"):
        assert UNFOLLOWABLE.search(caught), caught
    for spared in ("Moving to Teams", "the Teams tab", "Teams' app.initialize()", "an issue with the token"):
        assert not UNFOLLOWABLE.search(spared), spared
