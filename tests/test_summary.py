"""Tests of loading raw results, comparing backends and writing the summary tables."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from softgrad import summary as sm

DATA = Path(__file__).parent / "data"
HAND = DATA / "hand.json"
REAL = DATA / "small_run.json"

SOFTMAX = "softmax_backward"
CCE = "cce_softmax_backward"


@pytest.fixture(scope="module")
def hand():
    timings, not_timed, runs = sm.load_results(HAND)
    return sm.summarize(timings), not_timed, runs


@pytest.fixture(scope="module")
def real():
    timings, not_timed, runs = sm.load_results(REAL)
    return sm.summarize(timings), not_timed, runs


def row(summary, family, backend, n, classes, dtype):
    match = summary[
        (summary["family"] == family)
        & (summary["backend"] == backend)
        & (summary["n"] == n)
        & (summary["classes"] == classes)
        & (summary["dtype"] == dtype)
    ]
    assert len(match) == 1, f"expected one row for {backend} {n}x{classes} {dtype}"
    return match.iloc[0]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# Speedups, ratios and bandwidth against hand arithmetic on hand.json.


def test_speedup_over_looped_jacobian(hand):
    """numpy_vjp at 4 x 5 is 200 us / 10 us = 20 times faster than the baseline."""
    summary, _, _ = hand
    got = row(summary, SOFTMAX, "numpy_vjp", 4, 5, "float64")
    assert got["speedup_vs_baseline"] == pytest.approx(20.0)


def test_speedup_of_baseline_is_one(hand):
    """The baseline's speedup over itself is exactly 1."""
    summary, _, _ = hand
    got = row(summary, SOFTMAX, "looped_jacobian", 4, 5, "float64")
    assert got["speedup_vs_baseline"] == 1.0


def test_speedup_over_composed_looped(hand):
    """fused_numpy at 8 x 3 float32 is 100 us / 5 us = 20 times faster."""
    summary, _, _ = hand
    got = row(summary, CCE, "fused_numpy", 8, 3, "float32")
    assert got["speedup_vs_baseline"] == pytest.approx(20.0)


def test_speedup_nan_without_baseline(hand):
    """At 64 x 10 the baseline was skipped, so no backend gets a speedup."""
    summary, _, _ = hand
    for backend in ("numpy_vjp", "numba_serial"):
        got = row(summary, SOFTMAX, backend, 64, 10, "float64")
        assert math.isnan(got["speedup_vs_baseline"])


def test_time_vs_fastest(hand):
    """Each time is divided by the fastest at its size: 10 us / 4 us = 2.5."""
    summary, _, _ = hand
    cases = {
        ("numba_serial", 4, 5): 1.0,
        ("numpy_vjp", 4, 5): 10e-6 / 4e-6,
        ("looped_jacobian", 4, 5): 200e-6 / 4e-6,
        ("numpy_vjp", 64, 10): 1.0,
        ("numba_serial", 64, 10): 50e-6 / 20e-6,
    }
    for (backend, n, classes), expected in cases.items():
        got = row(summary, SOFTMAX, backend, n, classes, "float64")
        assert got["time_vs_fastest"] == pytest.approx(expected), backend


def test_gb_per_s_softmax(hand):
    """softmax_backward moves probs, dvalues and the output: 3 x 4 x 5 x 8 bytes."""
    summary, _, _ = hand
    got = row(summary, SOFTMAX, "numpy_vjp", 4, 5, "float64")
    assert got["gb_per_s"] == pytest.approx(3 * 4 * 5 * 8 / 10e-6 / 1e9)


def test_gb_per_s_cce(hand):
    """CCE moves probs and the output in float32 plus int64 labels."""
    summary, _, _ = hand
    got = row(summary, CCE, "fused_numpy", 8, 3, "float32")
    assert got["gb_per_s"] == pytest.approx((2 * 8 * 3 * 4 + 8 * 8) / 5e-6 / 1e9)


def test_median_and_iqr_kept(hand):
    """The median and IQR are the raw file's, in seconds."""
    summary, _, _ = hand
    got = row(summary, SOFTMAX, "numba_serial", 4, 5, "float64")
    assert got["median_s"] == pytest.approx(4e-6)
    assert got["iqr_s"] == pytest.approx(0.2 * 4e-6)


def test_baseline_flag(hand):
    """Only the registry's baseline backends are flagged."""
    summary, _, _ = hand
    flagged = set(summary.loc[summary["baseline"], "backend"])
    assert flagged == {"looped_jacobian", "composed_looped"}


def test_summary_sorted(hand):
    """Rows follow the registry's family order, then size, then time."""
    summary, _, _ = hand
    order = list(zip(summary["family"], summary["n"], summary["backend"]))
    assert order == [
        (SOFTMAX, 4, "numba_serial"),
        (SOFTMAX, 4, "numpy_vjp"),
        (SOFTMAX, 4, "looped_jacobian"),
        (SOFTMAX, 64, "numpy_vjp"),
        (SOFTMAX, 64, "numba_serial"),
        (CCE, 8, "fused_numpy"),
        (CCE, 8, "composed_looped"),
    ]


def test_summary_columns(hand):
    """The summary has exactly the columns of the one definition, in order."""
    summary, _, _ = hand
    assert tuple(summary.columns) == sm.SUMMARY_COLUMNS


# The same quantities on a real run, computed from the raw JSON with plain dicts.


def raw_medians(path: Path) -> dict:
    data = json.loads(path.read_text())
    medians = {}
    for benchmark in data["benchmarks"]:
        info = benchmark["extra_info"]
        key = (info["family"], info["backend"], info["n"], info["classes"])
        medians[key + (info["dtype"],)] = benchmark["stats"]["median"]
    return medians


BASELINES = {
    "softmax_backward": "looped_jacobian",
    "cce_softmax_backward": "composed_looped",
    "cce_logits_backward": "composed_looped",
}


def test_real_speedups_match_raw(real):
    """Speedups equal baseline median / median read straight from the JSON."""
    summary, _, _ = real
    medians = raw_medians(REAL)
    checked = 0
    for (family, backend, n, classes, dtype), median in medians.items():
        got = row(summary, family, backend, n, classes, dtype)
        base = medians.get((family, BASELINES[family], n, classes, dtype))
        if base is None:
            assert math.isnan(got["speedup_vs_baseline"]), backend
        else:
            assert got["speedup_vs_baseline"] == pytest.approx(base / median)
            checked += 1
    assert checked >= 12  # every backend of every family at 3 x 3, both dtypes


def test_real_time_vs_fastest_match_raw(real):
    """time_vs_fastest equals median / the smallest median of its size and dtype."""
    summary, _, _ = real
    medians = raw_medians(REAL)
    for (family, backend, n, classes, dtype), median in medians.items():
        peers = [
            value
            for key, value in medians.items()
            if key[0] == family and key[2:] == (n, classes, dtype)
        ]
        got = row(summary, family, backend, n, classes, dtype)
        assert got["time_vs_fastest"] == pytest.approx(median / min(peers))


def test_real_gb_per_s_match_raw(real):
    """GB/s equals the minimum bytes of a call, counted by hand, over the median."""
    summary, _, _ = real
    for (family, backend, n, classes, dtype), median in raw_medians(REAL).items():
        itemsize = 8 if dtype == "float64" else 4
        if family == "softmax_backward":
            moved = 3 * n * classes * itemsize
        else:
            moved = 2 * n * classes * itemsize + 8 * n
        got = row(summary, family, backend, n, classes, dtype)
        assert got["gb_per_s"] == pytest.approx(moved / median / 1e9)


def test_real_skipped_loaded(real):
    """Every skipped case of the real run is loaded with its reason."""
    _, not_timed, _ = real
    raw = json.loads(REAL.read_text())["softgrad"]["skipped"]
    assert len(not_timed) == len(raw)
    assert set(not_timed["reason"]) == {entry["reason"] for entry in raw}


# Loading: one row per case, metadata, and rejected files.


def test_load_one_row_per_case():
    """Timings have one row per (family, backend, n, classes, dtype)."""
    timings, _, _ = sm.load_results(REAL)
    assert not timings.duplicated(subset=list(sm.CASE_KEY)).any()
    assert len(timings) == len(json.loads(REAL.read_text())["benchmarks"])


def test_load_optional_convert_time():
    """convert_s is read where the file has it and NaN where it is missing."""
    real, _, _ = sm.load_results(REAL)
    hand_timings, _, _ = sm.load_results(HAND)
    raw = json.loads(REAL.read_text())["benchmarks"][0]["extra_info"]["convert_s"]
    assert real["convert_s"].iloc[0] == pytest.approx(raw)
    assert hand_timings["convert_s"].isna().all()


def test_load_statuses():
    """hand.json has one skipped and one failed case, with their reasons."""
    _, not_timed, _ = sm.load_results(HAND)
    statuses = dict(zip(not_timed["status"], not_timed["reason"]))
    assert statuses["skipped"] == "predicted 3.00 s per call, time budget 2 s"
    assert "off by 0.01" in statuses["failed"]


def test_load_run_metadata():
    """Each file gives one run with its path, command and commit."""
    _, _, runs = sm.load_results([HAND, REAL])
    assert [run["path"] for run in runs] == [str(HAND), str(REAL)]
    assert runs[0]["time_budget_s"] == 2.0
    assert runs[0]["commit_info"]["id"].startswith("0123456789")


def test_load_machine_from_softgrad_section(tmp_path):
    """A machine stored in the softgrad section is returned with the run."""
    data = json.loads(HAND.read_text())
    data["softgrad"]["machine"] = {"cpu": "Test CPU", "logical_cores": 3}
    _, _, runs = sm.load_results(write_json(tmp_path / "m.json", data))
    assert runs[0]["machine"]["cpu"] == "Test CPU"


def rejection(path: Path) -> str:
    with pytest.raises(sm.ResultsFileError) as caught:
        sm.load_results([HAND, path])
    return str(caught.value)


def test_load_rejects_truncated(tmp_path):
    """A truncated file is rejected as invalid JSON, naming the file."""
    path = tmp_path / "truncated.json"
    path.write_text(HAND.read_text()[:2000])
    message = rejection(path)
    assert str(path) in message
    assert "not valid JSON" in message


def test_load_rejects_non_benchmark(tmp_path):
    """JSON without a `benchmarks` list is rejected as not pytest-benchmark JSON."""
    path = write_json(tmp_path / "other.json", {"results": [1, 2, 3]})
    message = rejection(path)
    assert str(path) in message
    assert "not pytest-benchmark JSON" in message


def test_load_rejects_json_list(tmp_path):
    """A JSON array is rejected as not pytest-benchmark JSON."""
    path = write_json(tmp_path / "list.json", [1, 2])
    assert "not pytest-benchmark JSON" in rejection(path)


def test_load_rejects_foreign_benchmark(tmp_path):
    """pytest-benchmark JSON from another project lacks the softgrad section."""
    data = json.loads(HAND.read_text())
    del data["softgrad"]
    path = write_json(tmp_path / "foreign.json", data)
    message = rejection(path)
    assert str(path) in message
    assert "no `softgrad` section" in message


def test_load_rejects_schema_version(tmp_path):
    """A file of another schema version is rejected, naming the version."""
    data = json.loads(HAND.read_text())
    data["softgrad"]["schema_version"] = 99
    message = rejection(write_json(tmp_path / "future.json", data))
    assert "`schema_version` 99" in message


def test_load_rejects_incomplete_benchmark(tmp_path):
    """A benchmark without softgrad's extra_info is rejected, naming the field."""
    data = json.loads(HAND.read_text())
    del data["benchmarks"][0]["extra_info"]["family"]
    message = rejection(write_json(tmp_path / "partial.json", data))
    assert "extra_info.family" in message


def test_load_rejects_missing_file(tmp_path):
    """A path that does not exist is rejected, naming it."""
    path = tmp_path / "absent.json"
    message = rejection(path)
    assert str(path) in message
    assert "not found" in message


def test_results_file_error_is_value_error():
    """Callers may catch the loader's errors as ValueError."""
    assert issubclass(sm.ResultsFileError, ValueError)


# Merging several files.


@pytest.fixture
def later(tmp_path):
    """A copy of hand.json that re-times numpy_vjp and times the skipped baseline."""
    data = json.loads(HAND.read_text())
    benchmarks = data["benchmarks"]
    numpy_vjp = next(
        b
        for b in benchmarks
        if b["extra_info"]["backend"] == "numpy_vjp" and b["extra_info"]["n"] == 4
    )
    numpy_vjp["stats"]["median"] = 8e-6
    looped = json.loads(json.dumps(benchmarks[0]))
    looped["extra_info"].update(n=64, classes=10)
    looped["stats"]["median"] = 1e-3
    data["benchmarks"] = [numpy_vjp, looped]
    data["softgrad"]["skipped"] = []
    data["softgrad"]["failed"] = []
    return write_json(tmp_path / "later.json", data)


def test_merge_later_file_wins(later):
    """A case in both files takes the later file's timing."""
    timings, _, _ = sm.load_results([HAND, later])
    got = row(sm.summarize(timings), SOFTMAX, "numpy_vjp", 4, 5, "float64")
    assert got["median_s"] == pytest.approx(8e-6)


def test_merge_earlier_file_loses(later):
    """Swapping the files keeps the original timing."""
    timings, _, _ = sm.load_results([later, HAND])
    got = row(sm.summarize(timings), SOFTMAX, "numpy_vjp", 4, 5, "float64")
    assert got["median_s"] == pytest.approx(10e-6)


def test_merge_timed_replaces_skipped(later):
    """A case skipped in one file and timed in a later one counts as timed."""
    timings, not_timed, _ = sm.load_results([HAND, later])
    summary = sm.summarize(timings)
    got = row(summary, SOFTMAX, "numpy_vjp", 64, 10, "float64")
    assert got["speedup_vs_baseline"] == pytest.approx(1e-3 / 20e-6)
    assert (not_timed["status"] == "skipped").sum() == 0


def test_merge_keeps_other_cases(later):
    """Cases that only the first file contains stay in the merged timings."""
    timings, not_timed, _ = sm.load_results([HAND, later])
    hand_timings, _, _ = sm.load_results(HAND)
    assert len(timings) == len(hand_timings) + 1
    assert list(not_timed["status"]) == ["failed"]


# Formatting and writing.


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3.24e-6, "3.24 µs"),
        (2.15e-4, "215 µs"),
        (1e-3, "1.00 ms"),
        (1.5, "1.50 s"),
        (5e-8, "50.0 ns"),
        (999.96e-6, "1.00 ms"),
        (1234.5, "1,230 s"),
        (float("nan"), sm.MISSING),
    ],
)
def test_format_seconds(seconds, expected):
    """Durations read with three significant digits in the nearest unit."""
    assert sm.format_seconds(seconds) == expected


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.0, "1.00×"), (12.6, "12.6×"), (1050.9, "1,051×"), (math.nan, sm.MISSING)],
)
def test_format_ratio(ratio, expected):
    """Ratios read with a × sign, and a missing one as a dash."""
    assert sm.format_ratio(ratio) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0.00528, "0.00528"), (39.71, "39.7"), (999.96, "1,000"), (math.inf, sm.MISSING)],
)
def test_format_rate(rate, expected):
    """Bandwidths read with three significant digits."""
    assert sm.format_rate(rate) == expected


def test_write_summary_csv(hand, tmp_path):
    """The CSV has the definition's column names and the raw numbers."""
    summary, _, _ = hand
    csv, _ = sm.write_summary(summary, tmp_path)
    loaded = pd.read_csv(csv)
    assert tuple(loaded.columns) == sm.SUMMARY_COLUMNS
    assert loaded["median_s"].tolist() == pytest.approx(summary["median_s"].tolist())


def test_write_summary_markdown(hand, tmp_path):
    """The markdown has one table per family headed by the definition's headers."""
    summary, _, _ = hand
    _, markdown = sm.write_summary(summary, tmp_path)
    lines = markdown.read_text(encoding="utf-8").splitlines()
    # A markdown table's header is the line above its |---| separator line.
    headers = [
        [cell.strip() for cell in lines[i - 1].strip("|").split("|")]
        for i, line in enumerate(lines)
        if line.startswith("|") and set(line) <= set("|-: ")
    ]
    expected = [sm.COLUMN[name].header for name in sm.TABLE_COLUMNS]
    assert headers == [expected, expected]
    text = "\n".join(lines)
    assert "## softmax_backward (baseline: looped_jacobian)" in text


def test_write_summary_leaves_no_temporary_files(hand, tmp_path):
    """Only summary.csv and summary.md are left in the folder."""
    summary, _, _ = hand
    sm.write_summary(summary, tmp_path)
    sm.write_summary(summary, tmp_path)  # replaces existing files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", "summary.md"]


def test_write_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    """A failed replace leaves the old content and no temporary file."""
    target = tmp_path / "summary.csv"
    target.write_text("old")

    def fail(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        sm.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_write_atomic_permissions(tmp_path):
    """The written file gets the umask's permissions, not mkstemp's 0600."""
    umask = os.umask(0o022)
    try:
        path = sm.write_atomic(tmp_path / "report.html", "<p>")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


# The terminal table.


def render(summary, width=100) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    sm.print_table(summary, console)
    return console.file.getvalue()


def test_terminal_table_fits_100_columns(real):
    """No line of the terminal table is wider than 100 columns."""
    summary, _, _ = real
    lines = render(summary).splitlines()
    assert max(len(line) for line in lines) <= 100


@pytest.mark.parametrize("width", [80, 100])
def test_terminal_table_backend_names_whole(real, width):
    """Every backend name appears unbroken at 80 and 100 columns."""
    summary, _, _ = real
    text = render(summary, width)
    for backend in set(summary["backend"]):
        assert backend in text


@pytest.mark.parametrize("width", [80, 100])
def test_terminal_table_header_words_whole(real, width):
    """Headers wrap between words at 80 and 100 columns, never inside one."""
    summary, _, _ = real
    text = render(summary, width)
    for name in sm.TERMINAL_COLUMNS:
        for word in sm.COLUMN[name].header.split():
            assert word in text, word
    assert "…" not in text


@pytest.mark.parametrize("width", [80, 100])
def test_terminal_table_last_column_whole(real, width):
    """The GB/s of every row is printed whole at 80 and 100 columns."""
    summary, _, _ = real
    lines = render(summary, width).splitlines()
    for rate in summary["gb_per_s"]:
        expected = sm.format_rate(rate)
        assert any(line.rstrip().endswith(" " + expected) for line in lines), rate


def test_terminal_table_wide_values_fit_80(hand):
    """The widest values of a default grid still print whole at 80 columns."""
    summary = hand[0].copy()
    summary["n"] = 4096
    summary["classes"] = 128256  # Llama 3's vocabulary
    summary["backend"] = "einsum_jacobian"
    summary["median_s"] = 123.4e-6
    summary["speedup_vs_baseline"] = 31108.0
    summary["time_vs_fastest"] = 4424.0
    summary["gb_per_s"] = 0.00528
    lines = render(summary, 80).splitlines()
    row = next(line for line in lines if "128256" in line)
    assert row.split() == [
        "4096",
        "128256",
        "float64",
        "einsum_jacobian",
        "123",
        "µs",
        "31,108×",
        "4,424×",
        "0.00528",
    ]


def test_terminal_table_values(hand):
    """The table shows formatted medians, speedups and GB/s from the summary."""
    text = render(hand[0])
    assert "4.00 µs" in text  # numba_serial's median at 4 x 5
    assert "50.0×" in text  # its speedup over looped_jacobian
    assert "0.0480" in text  # numpy_vjp's GB/s at 4 x 5
    assert sm.MISSING in text  # no baseline at 64 x 10
