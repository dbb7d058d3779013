"""Vendor front-end packages from the npm registry: ``make dsfr`` and ``make axe-core``.

Usage: ``python tools/vendor_npm.py dsfr [VERSION]`` or ``python tools/vendor_npm.py
axe-core [VERSION]``; without a version, the newest release of the major version we use
(``npm view``). The package is fetched with ``npm pack`` (the registry's own tarball,
checked by npm against its integrity hash), and only the built pieces the pages use are
copied, so the wheel stays small:

- ``@gouvfr/dsfr`` → ``static/vendor/dsfr/``: ``dsfr.min.css``, ``dsfr.module.min.js`` and
  ``dsfr.nomodule.min.js``, the fonts (woff2, which every browser we support reads), the
  icons ``dsfr.min.css`` refers to, and ``icons.min.css`` with only the ``fr-icon-*``
  classes listed in ``ICONS`` (the full icon set is 4 MB). ``VERSION`` and ``LICENSE.md``
  are written next to them.
- ``axe-core`` → ``tests/browser/vendor/``: ``axe.min.js``, ``VERSION``, ``LICENSE``
  (used by the browser tests only; ``tests/`` is never in the wheel).

Nothing is downloaded at run time: the pages load these files from ``/static``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DSFR_DIR = ROOT / "static" / "vendor" / "dsfr"
AXE_DIR = ROOT / "tests" / "browser" / "vendor"

# Major versions followed by `make dsfr` / `make axe-core` without an explicit version.
MAJOR = {"@gouvfr/dsfr": "1", "axe-core": "4"}

# The fr-icon-* utility classes the templates use (templates/pages/*.html).
ICONS = (
    "arrow-left-line",
    "arrow-right-line",
    "calendar-line",
    "add-line",
    "check-line",
    "close-line",
    "close-circle-line",
    "chat-3-line",
    "checkbox-circle-line",
    "phone-line",
    "mail-line",
    "message-2-line",
    "user-line",
    "logout-box-r-line",
    "bar-chart-box-line",
    "settings-5-line",
    "time-line",
    "delete-line",
    "download-line",
    "search-line",
    "information-line",
    "error-warning-line",
    "map-pin-2-line",
    "edit-line",
)


def npm_version(package: str, requested: str | None) -> str:
    """The exact version to vendor: ``requested``, or the newest of our major version."""
    spec = f"{package}@{requested or MAJOR[package]}"
    out = subprocess.run(
        ["npm", "view", spec, "version", "--json"], check=True, capture_output=True, text=True
    ).stdout
    versions = json.loads(out)
    if isinstance(versions, str):
        return versions
    # npm lists the matching versions in publication order, not in version order.
    releases = [v for v in versions if re.fullmatch(r"\d+\.\d+\.\d+", v)]
    return max(releases, key=lambda v: tuple(int(part) for part in v.split(".")))


def npm_unpack(package: str, version: str, into: Path) -> Path:
    """``npm pack`` the release into ``into`` and return its unpacked ``package/`` folder."""
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    tarball = into / json.loads(out)[0]["filename"]
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    return into / "package"


def vendor_dsfr(version: str | None) -> None:
    version = npm_version("@gouvfr/dsfr", version)
    with tempfile.TemporaryDirectory() as tmp:
        package = npm_unpack("@gouvfr/dsfr", version, Path(tmp))
        dist = package / "dist"
        shutil.rmtree(DSFR_DIR, ignore_errors=True)
        (DSFR_DIR / "fonts").mkdir(parents=True)
        for name in ("dsfr.min.css", "dsfr.module.min.js", "dsfr.nomodule.min.js"):
            shutil.copy2(dist / name, DSFR_DIR / name)
        for font in sorted((dist / "fonts").glob("*.woff2")):
            shutil.copy2(font, DSFR_DIR / "fonts" / font.name)
        css = (dist / "dsfr.min.css").read_text()
        # woff files are listed after woff2 in each @font-face: browsers never fetch them.
        icons = set(re.findall(r"url\((icons/[^)]+\.svg)\)", css))
        icons |= _icon_subset(dist, icons)
        for icon in sorted(icons):
            target = DSFR_DIR / icon
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dist / icon, target)
        shutil.copy2(package / "LICENSE.md", DSFR_DIR / "LICENSE.md")
        (DSFR_DIR / "VERSION").write_text(f"@gouvfr/dsfr {version}\n")
    print(f"static/vendor/dsfr: @gouvfr/dsfr {version}")


def _icon_subset(dist: Path, icons: set[str]) -> set[str]:
    """Write ``icons.min.css`` with the ``ICONS`` classes; return the SVG files they use."""
    source = (dist / "utility" / "icons" / "icons.min.css").read_text()
    rules, used = [], set()
    for name in ICONS:
        match = re.search(
            r"\.fr-icon-"
            + re.escape(name)
            + r":after,\.fr-icon-"
            + re.escape(name)
            + r":before\{[^}]*\}",
            source,
        )
        if match is None:
            raise SystemExit(f"icon fr-icon-{name} is not in this DSFR release")
        rule = match.group(0).replace("../../icons/", "icons/")
        used.update(re.findall(r"url\((icons/[^)]+\.svg)\)", rule))
        rules.append(rule)
    header = source[: source.index("*/") + 2]
    (DSFR_DIR / "icons.min.css").write_text(header + "".join(rules) + "\n")
    return used


def vendor_axe(version: str | None) -> None:
    version = npm_version("axe-core", version)
    with tempfile.TemporaryDirectory() as tmp:
        package = npm_unpack("axe-core", version, Path(tmp))
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / "axe.min.js", AXE_DIR / "axe.min.js")
        shutil.copy2(package / "LICENSE", AXE_DIR / "LICENSE")
        (AXE_DIR / "VERSION").write_text(f"axe-core {version}\n")
    print(f"tests/browser/vendor: axe-core {version}")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"dsfr", "axe-core"}:
        raise SystemExit("usage: vendor_npm.py dsfr|axe-core [VERSION]")
    version = argv[1] if len(argv) > 1 else None
    (vendor_dsfr if argv[0] == "dsfr" else vendor_axe)(version)


if __name__ == "__main__":
    main(sys.argv[1:])
