"""Tests of `softgrad compare`: ratios, intervals, flags, exit status and pytest-benchmark."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from softgrad import cli
from softgrad import compare as cmp

DATA = Path(__file__).parent / "data"
HAND = DATA / "hand.json"
REAL = DATA / "small_run.json"
REPO = Path(__file__).resolve().parents[1]


def with_samples(data: dict, scale: dict | None = None, seed: int = 1) -> dict:
    """Give each benchmark of `data` 201 samples around its median, times `scale`.

    `scale` maps a backend name to a factor applied to its samples and stats.
    """
    data = copy.deepcopy(data)
    rng = np.random.default_rng(seed)
    for benchmark in data["benchmarks"]:
        factor = (scale or {}).get(benchmark["extra_info"]["backend"], 1.0)
        median = benchmark["stats"]["median"] * factor
        samples = median * (1 + 0.02 * rng.standard_normal(201))
        samples += median - np.median(samples)  # the stored median stays exact
        benchmark["stats"]["data"] = samples.tolist()
        for key in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
            benchmark["stats"][key] *= factor
    return data


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def hand_data():
    return json.loads(HAND.read_text())


@pytest.fixture()
def pair(tmp_path, hand_data):
    """Write OLD and NEW copies of hand.json with samples, NEW's numpy_vjp 3x slower."""
    old = write(tmp_path / "old.json", with_samples(hand_data, seed=1))
    new = write(
        tmp_path / "new.json", with_samples(hand_data, {"numpy_vjp": 3.0}, seed=2)
    )
    return old, new


def test_bootstrap_ratio_of_scaled_samples():
    """Samples scaled by 2 give a median ratio of exactly 2, inside the interval."""
    old = np.random.default_rng(3).lognormal(0, 0.1, 301)
    ratio, low, high = cmp.bootstrap_ratio(old, 2 * old)
    assert ratio == pytest.approx(2.0, rel=1e-12)
    assert low < 2.0
    assert high > 2.0


def test_bootstrap_interval_width_matches_theory():
    """The 95% interval of a ratio of medians of normal samples is 2 x 1.96 x its se.

    The median of n normal samples has a standard error of sqrt(pi / 2) sd /
    sqrt(n). The ratio of two independent medians near 1 adds both in quadrature.
    """
    rng = np.random.default_rng(4)
    n, sd = 2001, 0.1
    old = 1 + sd * rng.standard_normal(n)
    new = 1 + sd * rng.standard_normal(n)
    _, low, high = cmp.bootstrap_ratio(old, new)
    se = math.sqrt(2) * math.sqrt(math.pi / 2) * sd / math.sqrt(n)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_bootstrap_is_repeatable():
    """The fixed seed gives the same interval on every call."""
    old = np.random.default_rng(5).lognormal(0, 0.3, 50)
    new = np.random.default_rng(6).lognormal(0, 0.3, 50)
    assert cmp.bootstrap_ratio(old, new) == cmp.bootstrap_ratio(old, new)


def test_bootstrap_rejects_nonpositive_samples():
    """A zero sample is rejected with an error that names the argument."""
    with pytest.raises(ValueError, match="`new` has 2 samples"):
        cmp.bootstrap_ratio([1.0, 2.0], [0.0, 1.0])


def test_quartile_ratio_by_hand():
    """Notches 200 +- 6.28 us and 400 +- 12.56 us give 400/206.28 to 412.56/193.72."""
    old = {"median": 200e-6, "iqr": 40e-6, "rounds": 100}
    new = {"median": 400e-6, "iqr": 80e-6, "rounds": 100}
    ratio, low, high = cmp.quartile_ratio(old, new)
    assert ratio == pytest.approx(2.0)
    assert low == pytest.approx(387.44 / 206.28)
    assert high == pytest.approx(412.56 / 193.72)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (1.2, 1.4, cmp.SLOWER),
        (1.05, 1.4, cmp.SAME),  # the interval reaches below the minimum change
        (0.7, 0.85, cmp.FASTER),
        (0.85, 0.95, cmp.SAME),
        (0.9, 1.1, cmp.SAME),
    ],
)
def test_classify_needs_whole_interval_beyond(low, high, expected):
    """Only an interval wholly beyond 1.1x either way is a change."""
    assert cmp.classify(low, high, 1.1) == expected


def test_compare_flags_slowed_backend(pair):
    """The backend made 3x slower is flagged at a ratio of 3, and no other is."""
    comparison, _ = cmp.compare_files(*pair)
    slowed = comparison[comparison["backend"] == "numpy_vjp"]
    others = comparison[comparison["backend"] != "numpy_vjp"]
    assert len(slowed) > 0
    assert (slowed["change"] == cmp.SLOWER).all()
    assert np.allclose(slowed["ratio"], 3.0)
    assert (others["change"] == cmp.SAME).all()


def test_compare_uses_bootstrap_with_samples(pair):
    """Files that keep their samples get bootstrap intervals."""
    comparison, _ = cmp.compare_files(*pair)
    assert set(comparison["method"]) == {"bootstrap"}


def test_compare_without_samples_uses_quartiles():
    """small_run.json has no samples: compared with itself, every ratio is 1."""
    comparison, _ = cmp.compare_files(REAL, REAL)
    assert set(comparison["method"]) == {"quartiles"}
    assert np.allclose(comparison["ratio"], 1.0)
    assert set(comparison["change"]) == {cmp.SAME}


def test_compare_has_columns_in_order(pair):
    """The comparison has exactly COMPARE_COLUMN_NAMES."""
    comparison, _ = cmp.compare_files(*pair)
    assert tuple(comparison.columns) == cmp.COMPARE_COLUMN_NAMES


def test_compare_lists_unmatched_cases(tmp_path, hand_data):
    """A case timed only in OLD is listed under only_old, not compared."""
    old = write(tmp_path / "old.json", hand_data)
    trimmed = copy.deepcopy(hand_data)
    dropped = trimmed["benchmarks"].pop(0)["extra_info"]
    new = write(tmp_path / "new.json", trimmed)
    comparison, extra = cmp.compare_files(old, new)
    key = tuple(
        dropped[name] for name in ("family", "backend", "n", "classes", "dtype")
    )
    assert extra["only_old"] == [(*key, "default")]
    assert extra["only_new"] == []
    assert len(comparison) == len(trimmed["benchmarks"])


def test_relative_takes_out_uniform_slowdown(tmp_path, hand_data):
    """Every case 2x slower: a shift of 2, and with relative=True no change at all."""
    backends = {b["extra_info"]["backend"]: 2.0 for b in hand_data["benchmarks"]}
    old = write(tmp_path / "old.json", with_samples(hand_data, seed=1))
    new = write(tmp_path / "new.json", with_samples(hand_data, backends, seed=2))
    absolute, extra = cmp.compare_files(old, new)
    relative, _ = cmp.compare_files(old, new, relative=True)
    assert extra["shift"] == pytest.approx(2.0)
    assert set(absolute["change"]) == {cmp.SLOWER}
    assert set(relative["change"]) == {cmp.SAME}


def test_regressions_apply_factor(pair):
    """A 3x slowdown is a regression above 2 but not above 4."""
    comparison, _ = cmp.compare_files(*pair)
    assert set(cmp.regressions(comparison, 2.0)["backend"]) == {"numpy_vjp"}
    assert cmp.regressions(comparison, 4.0).empty


def test_cli_fail_above_exits_one(pair, capsys):
    """--fail-above 2 exits 1 and names the slowed backend on stderr."""
    status = cli.main(["compare", str(pair[0]), str(pair[1]), "--fail-above", "2"])
    captured = capsys.readouterr()
    assert status == 1
    assert "regression: softmax_backward/numpy_vjp" in captured.err


def test_cli_fail_above_passes_below_factor(pair, capsys):
    """--fail-above 4 exits 0 on a 3x slowdown, which the table still flags."""
    status = cli.main(["compare", str(pair[0]), str(pair[1]), "--fail-above", "4"])
    captured = capsys.readouterr()
    assert status == 0
    assert "slower" in captured.out


def test_cli_quiet_prints_only_errors(pair, capsys):
    """--quiet leaves stdout empty but still reports the regression on stderr."""
    status = cli.main(
        ["compare", "--quiet", str(pair[0]), str(pair[1]), "--fail-above", "2"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert "regression:" in captured.err


def test_cli_writes_csv(pair, tmp_path, capsys):
    """--output writes the comparison's columns and one row per common case."""
    target = tmp_path / "comparison.csv"
    assert (
        cli.main(["compare", str(pair[0]), str(pair[1]), "--output", str(target)]) == 0
    )
    lines = target.read_text().splitlines()
    assert lines[0] == ",".join(cmp.COMPARE_COLUMN_NAMES)
    assert len(lines) == 1 + len(json.loads(pair[0].read_text())["benchmarks"])


def test_cli_missing_file(tmp_path, capsys):
    """A missing file is an error with status 2 that names the path."""
    missing = tmp_path / "missing.json"
    assert cli.main(["compare", str(HAND), str(missing)]) == 2
    assert f"`{missing}` not found" in capsys.readouterr().err


def test_cli_no_common_case(tmp_path, capsys):
    """Two files with no case in common are an error, not an empty table."""
    assert cli.main(["compare", str(HAND), str(REAL)]) == 2
    assert "no timed case in common" in capsys.readouterr().err


def test_cli_rejects_factor_below_one(pair, capsys):
    """--fail-above 0.5 would fail on every faster case, so it is rejected."""
    assert cli.main(["compare", *map(str, pair), "--fail-above", "0.5"]) == 2
    assert "`--fail-above` must be 1 or more, got 0.5" in capsys.readouterr().err


def test_pytest_benchmark_compare_reads_raw_folder(tmp_path):
    """pytest's --benchmark-compare loads a `softgrad run` file from its raw folder."""
    selection = ["--sizes=4x5", "--backends=numpy_vjp", "--dtypes=float64"]
    environment = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    run = subprocess.run(
        [sys.executable, "-m", "softgrad", "run", "--quiet", "--quick"]
        + [*selection, f"--results={tmp_path}"],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (saved,) = (tmp_path / "raw").glob("run-*.json")

    pytest_options = [f"--softgrad-{option[2:]}" for option in selection]
    compared = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/benchmarks", "-q", "-p"]
        + ["no:cacheprovider", "--benchmark-only", *pytest_options]
        + ["--benchmark-max-time=0.01", f"--benchmark-storage=file://{saved.parent}"]
        + ["--benchmark-compare=run-", "--benchmark-compare-fail=median:100000%"],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert f"Comparing against benchmarks from: {saved.name}" in compared.stderr
    assert "(NOW)" in compared.stdout


def test_regressions_skip_short_cases(pair):
    """min_time above every OLD median leaves nothing to fail on."""
    comparison, _ = cmp.compare_files(*pair)
    slowest = comparison["old_median_s"].max()
    assert cmp.regressions(comparison, 2.0, min_time=2 * slowest).empty
    assert not cmp.regressions(comparison, 2.0, min_time=0.0).empty


def test_cli_min_time_passes_gate(pair, capsys):
    """--min-time 1 (second) lets a microsecond-scale slowdown pass the gate."""
    arguments = ["compare", *map(str, pair), "--fail-above", "2", "--min-time", "1"]
    assert cli.main(arguments) == 0
