"""Tests of the HTML report: structure, embedded plots, reasons, escaping and writing."""

from __future__ import annotations

import base64
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from softgrad import report
from softgrad import summary as sm

DATA = Path(__file__).parent / "data"
HAND = DATA / "hand.json"
REAL = DATA / "small_run.json"


class Page(HTMLParser):
    """The tags of an HTML page that matter here: title, headings, images, links."""

    def __init__(self, text: str):
        super().__init__()
        self.title = ""
        self.h1 = ""
        self.images: list[dict] = []
        self.references: list[str] = []  # every src and href
        self._inside = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for name in ("src", "href"):
            if name in attrs:
                self.references.append(attrs[name])
        if tag in ("title", "h1"):
            self._inside = tag

    def handle_endtag(self, tag):
        self._inside = None

    def handle_data(self, data):
        if self._inside == "title":
            self.title += data
        elif self._inside == "h1":
            self.h1 += data


def build(path: Path, folder: Path, machine=None) -> tuple[str, Path]:
    timings, not_timed, runs = sm.load_results(path)
    if machine is not None:
        runs[0]["machine"] = machine
    target = report.write_report(
        sm.summarize(timings), not_timed, runs, folder / "report.html"
    )
    return target.read_text(encoding="utf-8"), target


MACHINE = {
    "cpu": "Test CPU <model> & more",
    "logical_cores": 8,
    "physical_cores": 4,
    "memory_bytes": 16 * 2**30,
    "os": "Linux-6.0",
    "python": "3.11.7",
    "numpy": "2.4.6",
    "numba": "0.68.1",
    "pandas": "3.1.1",
    "thread_pools": [
        {
            "user_api": "blas",
            "internal_api": "openblas",
            "version": "0.3.27",
            "architecture": "Haswell",
            "num_threads": 4,
        }
    ],
    "numba_threads": 4,
    "numba_threading_layer": "omp",
    "environment": {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": None},
}


@pytest.fixture(scope="module")
def hand_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hand")
    text, _ = build(HAND, folder, MACHINE)
    return text, Page(text), folder


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    text, _ = build(REAL, folder)
    return text, Page(text)


def test_report_title(hand_report):
    """The page has the report's title in <title> and <h1>."""
    _, page, _ = hand_report
    assert page.title == report.TITLE
    assert page.h1 == report.TITLE


def test_report_one_image_per_plot(hand_report):
    """hand.json has two (family, dtype) pairs: two time plots and two heatmaps."""
    _, page, _ = hand_report
    assert len(page.images) == 2 + 2


def test_report_real_one_image_per_plot(real_report):
    """A real run of 3 families in 2 dtypes gives 6 time plots and 3 heatmaps."""
    _, page = real_report
    assert len(page.images) == 3 * 2 + 3


def test_report_images_are_embedded_png(hand_report):
    """Every image is a base64 PNG inside the page, with alt text."""
    _, page, _ = hand_report
    prefix = "data:image/png;base64,"
    for image in page.images:
        assert image["src"].startswith(prefix)
        assert base64.b64decode(image["src"][len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"
        assert image["alt"]


def test_report_no_remote_references(real_report):
    """The page loads nothing from the network and names no http(s) URL."""
    text, page = real_report
    assert "http://" not in text
    assert "https://" not in text
    assert all(reference.startswith("data:") for reference in page.references)


def test_report_lists_skipped_reason(hand_report):
    """The skipped case appears with its reason."""
    text, _, _ = hand_report
    assert "predicted 3.00 s per call, time budget 2 s" in text


def test_report_lists_failed_reason(hand_report):
    """The failed case appears with its reason."""
    text, _, _ = hand_report
    assert "is off by 0.01 (relative), tolerance 0.0002" in text


def test_report_real_skipped_reasons(real_report):
    """Every skipped case of the real run is listed with its reason."""
    text, _ = real_report
    for entry in json.loads(REAL.read_text())["softgrad"]["skipped"]:
        assert entry["reason"] in text


def test_report_headline(hand_report):
    """The opening paragraph names each size's winner with ratios from the data."""
    text, _, _ = hand_report
    # 4 x 5: numba_serial 4 us, numpy_vjp 10 us (2.5x), looped_jacobian 200 us (50x).
    assert (
        "at the smallest size, 4 × 5, numba_serial is fastest at 4.00 µs, 2.50×"
        " faster than numpy_vjp and 50.0× faster than looped_jacobian"
    ) in text
    # 64 x 10: numpy_vjp 20 us, numba_serial 50 us (2.5x), no baseline.
    assert (
        "at the largest size, 64 × 10, numpy_vjp is fastest at 20.0 µs, 2.50×"
        " faster than numba_serial (looped_jacobian was not timed there"
    ) in text


def test_report_headline_single_size(hand_report):
    """A family timed at one size calls it the only size: fused_numpy wins 20x."""
    text, _, _ = hand_report
    assert (
        "In cce_softmax_backward (float32), at the only size, 8 × 3, fused_numpy"
        " is fastest at 5.00 µs, 20.0× faster than composed_looped."
    ) in text


def test_report_heatmap_note(hand_report):
    """A grey heatmap cell is explained by the baseline's skip reason."""
    text, _, _ = hand_report
    assert "64 × 10, float64: skipped: predicted 3.00 s per call" in text


def test_report_machine(hand_report):
    """The machine's CPU, cores, BLAS and numba threads are shown, escaped."""
    text, _, _ = hand_report
    assert "Test CPU &lt;model&gt; &amp; more" in text
    assert "8 logical, 4 physical" in text
    assert "openblas 0.3.27 (Haswell), 4 threads" in text
    assert "4 (omp threading layer)" in text
    assert "Test CPU <model>" not in text


def test_report_machine_from_pytest_benchmark(real_report):
    """Without softgrad's machine, the CPU comes from pytest-benchmark's record."""
    text, _ = real_report
    cpu = json.loads(REAL.read_text())["machine_info"]["cpu"]["brand_raw"]
    assert cpu in text


def test_report_tables_use_headers(hand_report):
    """Each summary table is headed by the single column definition."""
    text, _, _ = hand_report
    for name in sm.TABLE_COLUMNS:
        header = sm.COLUMN[name].header
        assert f">{header}</th>" in text, name


def test_report_escapes_reasons(tmp_path):
    """A reason containing markup is shown as text, not inserted as HTML."""
    data = json.loads(HAND.read_text())
    data["softgrad"]["skipped"][0]["reason"] = "<script>alert(1)</script> & more"
    path = tmp_path / "markup.json"
    path.write_text(json.dumps(data))
    timings, not_timed, runs = sm.load_results(path)
    text = report.render_report(sm.summarize(timings), not_timed, runs)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text


def test_report_leaves_no_temporary_files(hand_report):
    """Writing the report leaves only report.html in its folder."""
    _, _, folder = hand_report
    assert [p.name for p in folder.iterdir()] == ["report.html"]


def test_report_write_failure_keeps_old_file(tmp_path, monkeypatch):
    """A failed write keeps the previous report and leaves no temporary file."""
    target = tmp_path / "report.html"
    target.write_text("previous")
    timings, not_timed, runs = sm.load_results(HAND)
    summary = sm.summarize(timings)

    def fail(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(summary, not_timed, runs, target)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_empty_summary(tmp_path):
    """A run where nothing was timed still gives a page with the reasons."""
    data = json.loads(HAND.read_text())
    data["benchmarks"] = []
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(data))
    timings, not_timed, runs = sm.load_results(path)
    text = report.render_report(sm.summarize(timings), not_timed, runs)
    assert "No case was timed" in text
    assert "predicted 3.00 s per call, time budget 2 s" in text


def test_report_interrupted_and_resumed_run(tmp_path):
    """The run facts say whether a run was interrupted and which file it resumed."""
    data = json.loads(HAND.read_text())
    data["softgrad"]["interrupted"] = True
    data["softgrad"]["resumed_from"] = ["results/raw/run-earlier.json"]
    path = tmp_path / "resumed.json"
    path.write_text(json.dumps(data))
    timings, not_timed, runs = sm.load_results(path)

    text = report.render_report(sm.summarize(timings), not_timed, runs)

    assert "<th>interrupted</th><td>yes</td>" in text
    assert "<th>resumed from</th><td>results/raw/run-earlier.json</td>" in text
