"""Tests of the HTML report: structure, embedded plots, reasons, escaping and writing."""

from __future__ import annotations

import base64
import html
import json
import re
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
        self.ids: list[str] = []
        self.headings: list[tuple[str, str | None]] = []  # (tag, id) of h2 and h3
        self._inside = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag in ("h2", "h3"):
            self.headings.append((tag, attrs.get("id")))
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


def answer_items(text: str) -> list[str]:
    """Return the text of each answer item, tags removed, no-break spaces as spaces."""
    block = text[text.index('<ul class="answers">') :]
    block = block[: block.index("</ul>")]
    items = re.findall(r"<li>(.*?)</li>", block)
    return [
        html.unescape(re.sub("<[^>]+>", "", item)).replace("\u00a0", " ")
        for item in items
    ]


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


def alts(page: Page, start: str) -> list[str]:
    return [image["alt"] for image in page.images if image["alt"].startswith(start)]


def test_report_one_image_per_plot(hand_report):
    """hand.json: 2 (family, dtype) pairs give 2 time plots and 2 heatmaps, plus
    one memory plot per family and one compile chart."""
    _, page, _ = hand_report
    assert len(alts(page, "median time per call")) == 2
    assert len(alts(page, "best speedup")) == 2
    assert len(alts(page, "estimated memory")) == 2
    assert len(alts(page, "numba compile time")) == 1
    assert len(page.images) == 2 + 2 + 2 + 1


def test_report_real_one_image_per_plot(real_report):
    """A real run of 3 families in 2 dtypes: 6 time plots, 3 heatmaps, 3 memory
    plots and one compile chart, and no bandwidth plot without a bandwidth."""
    _, page = real_report
    assert len(alts(page, "median time per call")) == 3 * 2
    assert len(alts(page, "best speedup")) == 3
    assert len(alts(page, "estimated memory")) == 3
    assert len(alts(page, "share of memory bandwidth")) == 0
    assert len(page.images) == 3 * 2 + 3 + 3 + 1


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
    for reference in page.references:
        assert reference.startswith(("data:", "#")), reference


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


def test_report_answer_first(hand_report):
    """The answer is the first section, before any plot, one item per family."""
    text, _, _ = hand_report
    answer = text.index('id="answer"')
    assert answer < text.index("<img")
    assert answer < text.index('id="time"')
    assert len(answer_items(text)) == 2


def test_report_answer_sentences(hand_report):
    """Each family's item is one sentence that names the family and the winner."""
    text, _, _ = hand_report
    items = answer_items(text)
    assert items[0].startswith("softmax_backward (float64): numba_serial")
    assert items[1].startswith("cce_softmax_backward (float32): fused_numpy")
    for item in items:
        assert item.endswith(".")
        assert ". " not in item


def test_report_answer_by_hand(hand_report):
    """fused_numpy at 8 x 3 is 100 us / 5 us = 20 times faster than the baseline."""
    text, _, _ = hand_report
    assert "20.0× faster than composed_looped" in answer_items(text)[1]


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


def test_report_contents_links_resolve(real_report):
    """Every link of the table of contents points at an id on the page."""
    text, page = real_report
    links = [ref[1:] for ref in page.references if ref.startswith("#")]
    assert len(links) >= 10
    for link in links:
        assert link in page.ids, link


def test_report_contents_lists_every_section(real_report):
    """Every h2 has an id, and the table of contents links to each."""
    _, page = real_report
    sections = [anchor for tag, anchor in page.headings if tag == "h2"]
    links = {ref[1:] for ref in page.references if ref.startswith("#")}
    assert None not in sections
    assert set(sections) <= links


def test_report_ids_unique(real_report):
    """No id is used twice, so every link has one target."""
    _, page = real_report
    assert len(page.ids) == len(set(page.ids))


def test_report_scaling_section(real_report):
    """The scaling section has a slopes table for each family."""
    text, _ = real_report
    section = text[text.index('id="scaling"') : text.index('id="bandwidth"')]
    assert section.count("Slopes, float64") == 3


def test_report_bandwidth_note_without_measurement(real_report):
    """Without a measured bandwidth the report says why the plot is missing."""
    text, _ = real_report
    assert "record no measured memory bandwidth" in text


def two_machines(tmp_path: Path) -> list[Path]:
    """Copies of hand.json from two hosts; only the second measured its bandwidth."""
    paths = []
    for host, bandwidth in (("server", None), ("laptop", 20.0)):
        data = json.loads(HAND.read_text())
        data["machine_info"]["node"] = host
        data["softgrad"]["machine"] = dict(MACHINE, cpu=f"{host} CPU")
        if bandwidth:
            data["softgrad"]["machine"]["bandwidth"] = {"triad_gb_per_s": bandwidth}
        path = tmp_path / f"{host}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def machines_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("machines")
    summary, not_timed, runs = sm.summarize_machines(two_machines(folder))
    text = report.render_report(summary, not_timed, runs)
    return text, Page(text)


def test_report_machines_side_by_side(machines_report):
    """Two machines: one facts table with a column for each, bandwidth included."""
    text, _ = machines_report
    section = text[text.index('id="machine"') : text.index('id="runs"')]
    assert section.count("<table") == 1
    assert "server (server CPU, 8 cores)</th>" in section
    assert "laptop (laptop CPU, 8 cores)</th>" in section
    assert "20 GB/s (triad)" in section
    assert "not measured" in section


def test_report_machines_answer_each(machines_report):
    """Each machine gets its own answer list, one sentence per family."""
    text, _ = machines_report
    answers = text[text.index('id="answer"') : text.index('class="lead"')]
    assert answers.count('<ul class="answers">') == 2
    assert answers.count("<li>") == 2 * 2


def test_report_machines_plots(machines_report):
    """Each machine has its own time plots; the normalized comparison has one per
    family; only the measured machine has bandwidth plots."""
    _, page = machines_report
    assert len(alts(page, "median time per call")) == 2 * 2
    assert len(alts(page, "fastest")) == 2
    assert len(alts(page, "share of memory bandwidth")) == 2


def test_report_machines_not_merged(tmp_path):
    """A case timed on two machines gives two summary rows, one per machine."""
    summary, _, _ = sm.summarize_machines(two_machines(tmp_path))
    timings, _, _ = sm.load_results(HAND)
    assert len(summary) == 2 * len(timings)
    assert set(summary["machine"]) == {
        "server (server CPU, 8 cores)",
        "laptop (laptop CPU, 8 cores)",
    }


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
