"""Zip the sample card for upload to Kaizala, with the production API URL filled in.

    python -m devserver.package --api-url https://<app>.azurewebsites.net [--kasclient KASClient.js]

Kaizala's rules: a flat ZIP (every file at the root), at most 1 MB, nothing loaded from outside the package
except the https URLs listed in the manifest's `externalUrls`.
"""

import argparse
import json
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from .kaizala import CARD_DIR

MAX_PACKAGE_BYTES = 1024 * 1024
PLACEHOLDER = "https://YOUR-FUNCTION-APP.azurewebsites.net"
CARD_FILES = ("package.json", "AppModel.json", "index.html", "app.js", "app.css", "config.js", "icon.png")


class PackageError(Exception):
    pass


def api_origin(api_url: str) -> str:
    parts = urlsplit(api_url.strip())
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise PackageError("--api-url must be an https URL such as https://contoso-cards.azurewebsites.net")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise PackageError("--api-url is the app's origin only (no path, query or fragment)")
    return f"https://{parts.netloc}"


def build(api_url: str, out: Path, card_dir: Path = CARD_DIR, kasclient: Path | None = None) -> list[str]:
    """Write the package to `out`; returns warnings (e.g. KASClient.js not included)."""
    origin = api_origin(api_url)
    warnings = []
    manifest = json.loads((card_dir / "package.json").read_text(encoding="utf-8"))
    manifest["externalUrls"] = [{"url": origin}]
    config = (card_dir / "config.js").read_text(encoding="utf-8")
    if PLACEHOLDER not in config:
        raise PackageError(f"{card_dir / 'config.js'} no longer holds the placeholder {PLACEHOLDER}")
    files: dict[str, bytes] = {name: (card_dir / name).read_bytes() for name in CARD_FILES}
    files["package.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    files["config.js"] = config.replace(PLACEHOLDER, origin).encode()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devserver.package", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True, help="the function app's https origin")
    parser.add_argument("--kasclient", type=Path, help="path to Microsoft's KASClient.js (default: card/KASClient.js)")
    parser.add_argument("--out", type=Path, default=Path("build/productpicker.zip"))
    args = parser.parse_args(argv)
    try:
        warnings = build(args.api_url, args.out, kasclient=args.kasclient)
    except (PackageError, OSError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
