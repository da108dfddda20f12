"""Which files `func azure functionapp publish` puts in a Python app's zip, computed the way Core Tools computes it.

A port of Azure Functions Core Tools' own code (github.com/Azure/azure-functions-core-tools, read at commit
3ee97a633, 2026-08-20; the same logic since tag 4.0.5611, where the files lived under src/Azure.Functions.Cli/):

- src/Cli/func/Helpers/ZipHelper.cs, GetAppZipFile (lines 13-36): reads `.funcignore` at the app's root into a
  GitIgnoreParser and, for Python, hands GetLocalFiles(root, parser) to PythonHelpers.GetPythonDeploymentPackage.
- src/Cli/func/Common/FileSystemHelpers.cs, GetLocalFiles and GetFiles (lines 131-179): the walk, the folders and
  file names it always leaves out, and the path each `.funcignore` rule is matched against.
- src/Cli/func/Common/GitIgnoreParser.cs (lines 29-125): how `.funcignore` is read. Every rule is a regular
  expression anchored at the root (`^`), so `__pycache__` matches only a root folder of that name, and `*` never
  crosses a `/`; a rule also matches any name it is a prefix of up to a word boundary (`build` matches `build.sh`).
- src/Cli/func/Helpers/PythonHelpers.cs, GetPythonDeploymentPackage (lines 396-451): with a remote build the
  local `.python_packages` folder is deleted before the zip is written (lines 405-418) and nothing is installed
  into it, so none of it ships; the platform installs `requirements.txt` itself.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path

# FileSystemHelpers.cs line 133: folders never entered, at any depth, compared ignoring case (line 171).
IGNORED_DIRECTORIES = (".git", ".vscode")
# FileSystemHelpers.cs line 139: file names never packed, at any depth, compared ignoring case (line 157).
IGNORED_FILES = (".funcignore", ".gitignore", "local.settings.json", "project.lock.json")
# Constants.cs: ExternalPythonPackages.
PYTHON_PACKAGES = ".python_packages"

# GitIgnoreParser.cs line 104: the characters escaped before `**` and `*` are turned into regular expressions.
_SPECIAL = re.compile(r"[\-\[\]\/\{\}\(\)\+\?\.\\\^\$\|]")
# GitIgnoreParser.cs line 74: a list with no rules becomes "$^", which matches no file name.
_NOTHING = re.compile("$^")


def _prepare(pattern: str) -> str:
    """GitIgnoreParser.PrepareRegexPattern (lines 102-107)."""
    escaped = _SPECIAL.sub(lambda match: "\\" + match.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")


def _compile(patterns: list[str]) -> re.Pattern[str]:
    """GitIgnoreParser lines 60-77: one alternation per list, anchored at the start, ending at a word boundary.

    RegexOptions.ECMAScript makes `\\b` ASCII-only: re.ASCII here. (PreparePartialRegex, lines 109-125, builds a
    second expression that Accepts and Denies never use; it is left out.)
    """
    if not patterns:
        return _NOTHING
    alternatives = ")|(".join(_prepare(pattern) for pattern in sorted(patterns))
    return re.compile(f"^(({alternatives}))\\b", re.ASCII)


class GitIgnoreParser:
    """GitIgnoreParser.cs: `.funcignore` as Core Tools reads it (not as git reads a `.gitignore`)."""

    def __init__(self, content: str) -> None:
        # Lines 31-59: split on "\n", trim, drop comments and blank lines; "!" makes a rule negative; one leading
        # "/" is dropped (every rule is anchored at the root anyway).
        positive: list[str] = []
        negative: list[str] = []
        for raw in content.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            is_negative = line.startswith("!")
            if is_negative:
                line = line[1:]
            if line.startswith("/"):
                line = line[1:]
            (negative if is_negative else positive).append(line)
        self._positive = _compile(positive)
        self._negative = _compile(negative)

    def accepts(self, name: str) -> bool:
        """Lines 82-90: kept when a negative rule matches, or no positive rule does."""
        if name == "/":
            name = ""
        return bool(self._negative.search(name)) or not self._positive.search(name)

    def denies(self, name: str) -> bool:
        """Lines 92-100."""
        return not self.accepts(name)


def _files(directory: Path) -> Iterator[Path]:
    """FileSystemHelpers.GetFiles (lines 152-179): this folder's files, then each subfolder's, minus the defaults."""
    entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_file() and entry.name.lower() not in IGNORED_FILES:
            yield Path(entry.path)
    for entry in entries:
        if entry.is_dir() and entry.name.lower() not in IGNORED_DIRECTORIES:
            yield from _files(Path(entry.path))


def local_files(root: Path, parser: GitIgnoreParser | None) -> Iterator[str]:
    """FileSystemHelpers.GetLocalFiles (lines 131-150), as paths relative to `root` with "/" separators.

    Line 143: the name matched against `.funcignore` is the full path with every occurrence of the root's path
    replaced by nothing, trimmed of separators.
    """
    root_text = str(root)
    for file in _files(root):
        name = str(file).replace(root_text, "").strip(os.sep).replace("\\", "/")
        if parser is None or parser.accepts(name):
            yield name


def remote_build_package(root: Path) -> set[str]:
    """The files the zip holds for `func azure functionapp publish <app> --build remote` of a Python app at `root`.

    ZipHelper.cs lines 15-19: the parser comes from `<root>/.funcignore` when there is one. PythonHelpers.cs
    lines 405-418 and 434-437: a remote build deletes `<root>/.python_packages` first and installs nothing there,
    so none of its files ship (the walk is lazy and runs after the deletion).
    """
    funcignore = root / ".funcignore"
    parser = GitIgnoreParser(funcignore.read_text(encoding="utf-8")) if funcignore.is_file() else None
    return {name for name in local_files(root, parser) if not _under(name, PYTHON_PACKAGES)}


def _under(name: str, folder: str) -> bool:
    return name == folder or name.startswith(folder + "/")
