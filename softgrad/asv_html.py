"""Make asv's published HTML work offline: serve its scripts and styles locally.

`asv publish` (asv 0.6) writes an index.html that loads jQuery, flot, bootstrap
and three small plugins from CDNs, with integrity attributes. All of them are
npm packages: `npm pack` fetches each once into a cache, and the page is
rewritten to load the files from a vendor/ folder beside it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    """One file of an npm package that replaces one CDN file of asv's page."""

    cdn_name: str  # the last part of the CDN URL that asv's page loads
    package: str  # npm name@version
    member: str  # path inside the package
    local: str  # path under the HTML folder


# The CDN files of asv 0.6.6's index.html. flot's npm package has no minified
# files, and stupid-table-plugin 1.0.1 is not on npm, so 1.1.3 replaces it.
ASSETS = (
    Asset(
        "jquery-3.3.1.min.js",
        "jquery@3.3.1",
        "dist/jquery.min.js",
        "vendor/jquery.min.js",
    ),
    Asset(
        "jquery.flot.min.js", "flot@0.8.3", "jquery.flot.js", "vendor/jquery.flot.js"
    ),
    Asset(
        "jquery.flot.time.min.js",
        "flot@0.8.3",
        "jquery.flot.time.js",
        "vendor/jquery.flot.time.js",
    ),
    Asset(
        "jquery.flot.selection.min.js",
        "flot@0.8.3",
        "jquery.flot.selection.js",
        "vendor/jquery.flot.selection.js",
    ),
    Asset(
        "jquery.flot.categories.min.js",
        "flot@0.8.3",
        "jquery.flot.categories.js",
        "vendor/jquery.flot.categories.js",
    ),
    Asset(
        "jquery.flot.orderBars.js",
        "flot-orderbars@1.0.0",
        "js/jquery.flot.orderBars.js",
        "vendor/jquery.flot.orderBars.js",
    ),
    Asset(
        "stupidtable.min.js",
        "stupid-table-plugin@1.1.3",
        "stupidtable.min.js",
        "vendor/stupidtable.min.js",
    ),
    Asset("md5.min.js", "blueimp-md5@2.19.0", "js/md5.min.js", "vendor/md5.min.js"),
    Asset(
        "bootstrap.min.js",
        "bootstrap@3.1.1",
        "dist/js/bootstrap.min.js",
        "vendor/js/bootstrap.min.js",
    ),
    # The stylesheet loads its icon font from ../fonts/, so the fonts follow it.
    Asset(
        "bootstrap.min.css",
        "bootstrap@3.1.1",
        "dist/css/bootstrap.min.css",
        "vendor/css/bootstrap.min.css",
    ),
)
FONTS = ("bootstrap@3.1.1", "dist/fonts/", "vendor/fonts/")

# A <script src="https://..."> or <link href="https://..."> tag of asv's page.
_REMOTE_TAG = re.compile(
    r"<(?P<tag>script|link)\b(?P<attributes>[^>]*?)"
    r"\b(?P<attribute>src|href)=\"(?P<url>https?://[^\"]+)\"(?P<rest>[^>]*)>"
)
_CDN_ATTRIBUTES = re.compile(
    r"\s+(?:integrity|crossorigin|referrerpolicy)=\"[^\"]*\"|\s+crossorigin\b"
)


class AssetError(RuntimeError):
    """An asset that cannot be fetched or a page whose CDN files are unknown."""


def default_cache() -> Path:
    """Return the folder for the npm tarballs: $XDG_CACHE_HOME/softgrad/asv-assets."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "softgrad" / "asv-assets"


def tarball_name(package: str) -> str:
    """Return the file name `npm pack` gives `package`, as "jquery-3.3.1.tgz"."""
    name, _, version = package.rpartition("@")
    return f"{name.replace('@', '').replace('/', '-')}-{version}.tgz"


def fetch(cache: Path, packages: set[str] | None = None) -> dict[str, Path]:
    """Download every package's tarball into `cache` with `npm pack`, once.

    Returns the tarball of each package. A tarball already in `cache` is not
    downloaded again, so a filled cache works offline.
    """
    packages = packages or {asset.package for asset in ASSETS} | {FONTS[0]}
    cache.mkdir(parents=True, exist_ok=True)
    tarballs = {package: cache / tarball_name(package) for package in packages}
    missing = sorted(package for package, path in tarballs.items() if not path.exists())
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError(
                f"npm is not installed, and {cache} lacks {', '.join(missing)}:"
                " install npm (Node.js) or copy the tarballs there"
            )
        log.info("fetching %s with npm pack", ", ".join(missing))
        completed = subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", str(cache), *missing],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            raise AssetError(
                f"`npm pack {' '.join(missing)}` failed with exit status"
                f" {completed.returncode}: {completed.stderr.strip()[-500:]}"
            )
    for package, path in tarballs.items():
        if not path.exists():
            raise AssetError(f"npm pack wrote no {path.name} for {package}")
    return tarballs


def _extract(tarball: Path, member: str, target: Path) -> None:
    """Copy `member` (a file, or a folder ending in /) of an npm tarball to `target`."""
    with tarfile.open(tarball) as archive:
        prefix = f"package/{member}"
        found = [
            entry
            for entry in archive.getmembers()
            if entry.isfile()
            and (
                entry.name == prefix
                or (member.endswith("/") and entry.name.startswith(prefix))
            )
        ]
        if not found:
            raise AssetError(f"{tarball.name} has no {member}")
        for entry in found:
            destination = (
                target / entry.name[len(prefix) :] if member.endswith("/") else target
            )
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(entry)
            destination.write_bytes(source.read())


def localize(html_dir: Path, tarballs: dict[str, Path]) -> list[str]:
    """Rewrite `html_dir`/index.html to load local copies of its CDN files.

    Copies each file from the tarballs into `html_dir`/vendor, points the
    tags at them and drops the integrity, crossorigin and referrerpolicy
    attributes, which do not apply to local files. Returns the CDN URLs
    replaced. Raises AssetError, leaving the page as it was, when the page
    loads a CDN file this module does not know.
    """
    index = html_dir / "index.html"
    text = index.read_text(encoding="utf-8")
    by_name = {asset.cdn_name: asset for asset in ASSETS}
    unknown = [
        match["url"]
        for match in _REMOTE_TAG.finditer(text)
        if match["url"].rsplit("/", 1)[-1] not in by_name
    ]
    if unknown:
        raise AssetError(
            f"{index} loads {', '.join(unknown)}, which softgrad.asv_html does not"
            " know how to serve locally; this asv version's page differs from"
            " asv 0.6.6's"
        )
    replaced = []

    def local_tag(match: re.Match) -> str:
        asset = by_name[match["url"].rsplit("/", 1)[-1]]
        _extract(tarballs[asset.package], asset.member, html_dir / asset.local)
        replaced.append(match["url"])
        attributes = _CDN_ATTRIBUTES.sub("", match["attributes"])
        rest = _CDN_ATTRIBUTES.sub("", match["rest"])
        return f'<{match["tag"]}{attributes}{match["attribute"]}="{asset.local}"{rest}>'

    rewritten = _REMOTE_TAG.sub(local_tag, text)
    package, member, local = FONTS
    _extract(tarballs[package], member, html_dir / local)
    index.write_text(rewritten, encoding="utf-8")
    log.info("%s now loads %d files from vendor/", index, len(replaced))
    return replaced
