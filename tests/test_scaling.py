"""Tests of the scaling fits and crossovers against power laws and hand algebra."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softgrad import scaling as sc
from softgrad import summary as sm

SOFTMAX = "softmax_backward"
SIZES = [(1, 10), (10, 10), (100, 10), (1000, 10), (100, 100), (100, 1000)]


def overhead_time(n, classes):
    """1 us of call overhead plus 1 ns per element."""
    return 1e-6 + 1e-9 * n * classes


def lean_time(n, classes):
    """No overhead, 10 ns per element: faster than overhead_time below 111 elements."""
    return 1e-8 * n * classes


def quadratic_time(n, classes):
    """A Jacobian-like cost: 1 ns per sample and class squared."""
    return 1e-9 * n * classes * classes


TIMES = {
    "numba_parallel": overhead_time,
    "numba_serial": lean_time,
    "looped_jacobian": quadratic_time,
}


def make_summary(times=TIMES, sizes=SIZES, dtype="float64") -> pd.DataFrame:
    """A summary with only the columns the fits read, from closed-form times."""
    rows = [
        {
            "family": SOFTMAX,
            "n": n,
            "classes": classes,
            "dtype": dtype,
            "backend": backend,
            "median_s": time(n, classes),
        }
        for backend, time in times.items()
        for n, classes in sizes
    ]
    frame = pd.DataFrame(rows)
    fastest = frame.groupby(["family", "n", "classes", "dtype"])["median_s"]
    return frame.assign(time_vs_fastest=frame["median_s"] / fastest.transform("min"))


def fit(table, backend, against, fixed=""):
    match = table[
        (table["backend"] == backend)
        & (table["against"] == against)
        & (table["fixed"] == fixed)
    ]
    assert len(match) == 1, f"expected one fit of {backend} against {against} {fixed}"
    return match.iloc[0]


def test_fit_slope_of_power_law():
    """Times of 2e-9 x^1.5 fit a slope of 1.5 with R² of 1."""
    sizes = np.array([10, 100, 1000, 10_000])
    slope, se, r2 = sc.fit_slope(sizes, 2e-9 * sizes**1.5)
    assert slope == pytest.approx(1.5)
    assert se == pytest.approx(0, abs=1e-12)
    assert r2 == pytest.approx(1.0)


def test_fit_slope_standard_error_by_hand():
    """Points (1, 1), (10, 10), (100, 1000): slope 1.5, se sqrt(1/12), R² 1 - 1/28.

    In log10, x = 0, 1, 2 and y = 0, 1, 3. Sxx = 2 and Sxy = 3 give the slope.
    The residuals 1/6, -1/3, 1/6 sum to 1/6 in squares, over 1 degree of freedom,
    and the total sum of squares is 14/3. Neither the slope nor its standard
    error depends on the base of the logarithm.
    """
    slope, se, r2 = sc.fit_slope([1, 10, 100], [1, 10, 1000])
    assert slope == pytest.approx(1.5)
    assert se == pytest.approx(math.sqrt(1 / 12))
    assert r2 == pytest.approx(1 - 1 / 28)


def test_fit_slope_two_points_has_no_error():
    """Two points fit exactly, so the standard error is NaN."""
    _, se, _ = sc.fit_slope([10, 100], [1.0, 3.0])
    assert math.isnan(se)


def test_fit_slope_rejects_one_size():
    """One distinct size has no slope, and the error names `sizes`."""
    with pytest.raises(ValueError, match="`sizes` has 1 distinct values"):
        sc.fit_slope([10, 10], [1.0, 2.0])


def test_scaling_linear_backend_slope_one():
    """A backend with no overhead grows with slope 1 against N × L."""
    table = sc.scaling_table(make_summary())
    assert fit(table, "numba_serial", sc.ELEMENTS)["slope"] == pytest.approx(1.0)


def test_scaling_quadratic_backend_against_classes():
    """Time N L² has slope 2 against L at fixed N = 100 and 1 against N at L = 10."""
    table = sc.scaling_table(make_summary())
    assert fit(table, "looped_jacobian", "L", "N = 100")["slope"] == pytest.approx(2.0)
    assert fit(table, "looped_jacobian", "N", "L = 10")["slope"] == pytest.approx(1.0)


def test_scaling_overhead_flattens_slope():
    """1 us of overhead pulls the slope against N × L below 1."""
    table = sc.scaling_table(make_summary())
    assert fit(table, "numba_parallel", sc.ELEMENTS)["slope"] < 0.9


def test_scaling_skips_lines_of_one_size():
    """No line is fitted at N = 1, which was timed at one L only."""
    table = sc.scaling_table(make_summary())
    assert "N = 1" not in set(table["fixed"])


def test_scaling_counts_points_and_range():
    """The N × L fit uses all six sizes, from 10 to 100,000 elements."""
    row = fit(sc.scaling_table(make_summary()), "numba_serial", sc.ELEMENTS)
    assert row["points"] == 6
    assert row["smallest"] == 10
    assert row["largest"] == 100_000


def test_crossover_near_algebraic_point():
    """overhead_time = lean_time at 1e-6 / 9e-9 = 111 elements: found within 5%."""
    table = sc.crossovers(make_summary())
    match = table[
        (table["along"] == "N")
        & (table["faster_below"] == "numba_serial")
        & (table["faster_above"] == "numba_parallel")
    ]
    assert len(match) == 1
    crossing = match.iloc[0]
    assert crossing["at"] == pytest.approx(1e-6 / 9e-9 / 10, rel=0.05)  # N at L = 10
    assert crossing["below"] == 10
    assert crossing["above"] == 100


def test_crossover_margins():
    """Margins on both sides of the N crossover are the time ratios at 10 and 100."""
    table = sc.crossovers(make_summary())
    crossing = table[
        (table["along"] == "N") & (table["faster_above"] == "numba_parallel")
    ].iloc[0]
    assert crossing["margin_below"] == pytest.approx(
        overhead_time(10, 10) / lean_time(10, 10)
    )
    assert crossing["margin_above"] == pytest.approx(
        lean_time(100, 10) / overhead_time(100, 10)
    )


def test_no_crossover_without_swap():
    """Two backends whose order never changes do not cross."""
    times = {"numba_serial": lean_time, "numpy_vjp": lambda n, c: 2 * lean_time(n, c)}
    assert sc.crossovers(make_summary(times)).empty


def test_leading_crossovers_drop_baseline():
    """Crossings with the baseline, looped_jacobian, are left out of the report's list."""
    summary = make_summary()
    table = sc.crossovers(summary)
    leading = sc.leading_crossovers(summary, table)
    assert (table["faster_below"] == "looped_jacobian").any() or (
        table["faster_above"] == "looped_jacobian"
    ).any()
    assert "looped_jacobian" not in set(leading["faster_below"])
    assert "looped_jacobian" not in set(leading["faster_above"])


def test_write_scaling_files(tmp_path):
    """scaling.csv and crossovers.csv have their columns, and scaling.md both tables."""
    paths = sc.write_scaling(make_summary(), tmp_path)
    assert [path.name for path in paths] == [
        "scaling.csv",
        "crossovers.csv",
        "scaling.md",
    ]
    scaling_header = (tmp_path / "scaling.csv").read_text().splitlines()[0]
    crossover_header = (tmp_path / "crossovers.csv").read_text().splitlines()[0]
    assert scaling_header == ",".join(sc.SCALING_COLUMN_NAMES)
    assert crossover_header == ",".join(sc.CROSSOVER_COLUMN_NAMES)
    markdown = (tmp_path / "scaling.md").read_text()
    assert "## Slopes" in markdown
    assert "## Crossovers" in markdown


def test_scaling_of_real_run():
    """The saved small run (two sizes) gives one N × L fit per backend and dtype."""
    timings, _, _ = sm.load_results(Path(__file__).parent / "data" / "small_run.json")
    summary = sm.summarize(timings)
    table = sc.scaling_table(summary)
    timed_twice = summary.groupby(["family", "dtype", "backend"]).size() >= 2
    assert len(table[table["against"] == sc.ELEMENTS]) == int(timed_twice.sum())
