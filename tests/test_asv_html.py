"""Tests of serving asv's published page offline, with fake npm tarballs."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from softgrad import asv_html

asv = pytest.importorskip(
    "asv", reason="asv is not installed: pip install -e '.[test]'"
)
ASV_INDEX = Path(asv.__file__).parent / "www" / "index.html"


def fake_tarballs(folder: Path) -> dict[str, Path]:
    """Write one tarball per package, each member holding its own name."""
    members: dict[str, list[str]] = {}
    for asset in asv_html.ASSETS:
        members.setdefault(asset.package, []).append(asset.member)
    package, fonts, _ = asv_html.FONTS
    members[package].append(fonts + "glyphicons-halflings-regular.woff")
    tarballs = {}
    for package, names in members.items():
        path = folder / asv_html.tarball_name(package)
        with tarfile.open(path, "w:gz") as archive:
            for name in names:
                data = f"/* {package} {name} */".encode()
                entry = tarfile.TarInfo(f"package/{name}")
                entry.size = len(data)
                archive.addfile(entry, io.BytesIO(data))
        tarballs[package] = path
    return tarballs


@pytest.fixture()
def published(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    shutil.copy(ASV_INDEX, html / "index.html")
    return html, fake_tarballs(tmp_path)


def test_localize_removes_cdn_loads(published):
    """After localizing, no script or stylesheet is loaded from the network."""
    html, tarballs = published
    asv_html.localize(html, tarballs)
    text = (html / "index.html").read_text()
    assert not re.search(r"<script[^>]*src=\"https?://", text)
    assert not re.search(r"<link[^>]*href=\"https?://", text)
    assert "integrity=" not in text


def test_localize_replaces_every_asset(published):
    """Each of asv 0.6's ten CDN files is replaced by a copy from its package."""
    html, tarballs = published
    replaced = asv_html.localize(html, tarballs)
    assert len(replaced) == len(asv_html.ASSETS)
    for asset in asv_html.ASSETS:
        copied = (html / asset.local).read_text()
        assert copied == f"/* {asset.package} {asset.member} */"


def test_localize_copies_fonts_beside_css(published):
    """bootstrap's CSS finds its icon font at ../fonts/ from vendor/css/."""
    html, tarballs = published
    asv_html.localize(html, tarballs)
    assert (html / "vendor" / "fonts" / "glyphicons-halflings-regular.woff").is_file()


def test_localize_rejects_unknown_cdn(published):
    """A page loading a CDN file the module does not know is left unchanged."""
    html, tarballs = published
    index = html / "index.html"
    original = index.read_text().replace(
        "</head>", '<script src="https://cdn.example.invalid/new.js"></script></head>'
    )
    index.write_text(original)
    with pytest.raises(asv_html.AssetError, match="new.js"):
        asv_html.localize(html, tarballs)
    assert index.read_text() == original


def test_fetch_uses_cache_without_npm(tmp_path, monkeypatch):
    """Tarballs already in the cache are used without running npm."""
    tarballs = fake_tarballs(tmp_path)
    monkeypatch.setattr(asv_html.shutil, "which", lambda name: None)
    assert asv_html.fetch(tmp_path) == tarballs


def test_fetch_without_npm_names_missing(tmp_path, monkeypatch):
    """An empty cache and no npm raise an error naming the missing packages."""
    monkeypatch.setattr(asv_html.shutil, "which", lambda name: None)
    with pytest.raises(asv_html.AssetError, match="npm is not installed.*jquery@3.3.1"):
        asv_html.fetch(tmp_path)


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("jquery@3.3.1", "jquery-3.3.1.tgz"),
        ("@scope/name@1.0.0", "scope-name-1.0.0.tgz"),
    ],
)
def test_tarball_name(package, expected):
    """Tarball names follow npm pack: scope and slash joined by a hyphen."""
    assert asv_html.tarball_name(package) == expected
