"""Scaling of each backend's time with size, and the sizes where backends swap places.

Slopes are least-squares fits of log(time) against log(size). A slope of 1
means time grows in proportion to size, 2 with its square, and near 0 the
time is mostly a fixed overhead.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from softgrad.summary import (
    Column,
    baseline_backend,
    families,
    format_ratio,
    write_atomic,
)

log = logging.getLogger(__name__)


def _format_slope(value) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _format_count(value) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:,.0f}"


SCALING_COLUMNS = (
    Column("family", "family", "the gradient computed, one of impls.FAMILIES"),
    Column("dtype", "dtype", "floating-point type of the inputs and output"),
    Column("backend", "backend", "the implementation, as impls.backends() names it"),
    Column(
        "against",
        "against",
        "the size the time is fitted against: N × L (all sizes), L or N",
    ),
    Column("fixed", "fixed", "the size held fixed, as N = 256, or empty"),
    Column("points", "points", "number of timed sizes in the fit", _format_count),
    Column("smallest", "from", "smallest value of the fitted size", _format_count),
    Column("largest", "to", "largest value of the fitted size", _format_count),
    Column(
        "slope",
        "slope",
        "least-squares slope of log(median time) against log(size)",
        _format_slope,
    ),
    Column(
        "slope_se",
        "± se",
        "standard error of the slope; empty for two points, which fit exactly",
        _format_slope,
    ),
    Column(
        "r2",
        "R²",
        "share of the variance of log(time) the line explains",
        _format_slope,
    ),
)
SCALING_COLUMN_NAMES = tuple(column.name for column in SCALING_COLUMNS)

CROSSOVER_COLUMNS = (
    Column("family", "family", "the gradient computed, one of impls.FAMILIES"),
    Column("dtype", "dtype", "floating-point type of the inputs and output"),
    Column("along", "along", "the size that grows: N × L (all sizes), L or N"),
    Column("fixed", "fixed", "the size held fixed, as L = 10, or empty"),
    Column("faster_below", "faster below", "the backend faster at the smaller size"),
    Column("faster_above", "faster above", "the backend faster at the larger size"),
    Column(
        "at",
        "crossover",
        "the size where the two times are equal, interpolated on log-log axes",
        _format_count,
    ),
    Column("below", "from", "the timed size just below the crossover", _format_count),
    Column("above", "to", "the timed size just above the crossover", _format_count),
    Column(
        "margin_below",
        "margin below",
        "how many times faster faster_below is at the size below",
        format_ratio,
    ),
    Column(
        "margin_above",
        "margin above",
        "how many times faster faster_above is at the size above",
        format_ratio,
    ),
)
CROSSOVER_COLUMN_NAMES = tuple(column.name for column in CROSSOVER_COLUMNS)

ELEMENTS = "N × L"
# Two backends within 5% of each other are tied on a noisy machine, so a swap
# between ties is no crossover worth reporting; crossovers.csv keeps them all.
MIN_MARGIN = 1.05


def fit_slope(sizes, times) -> tuple[float, float, float]:
    """Fit log(times) = a + slope log(sizes), returning slope, standard error and R².

    The standard error is NaN for two points and R² is NaN when every time
    is equal. Raises ValueError for fewer than two distinct sizes.
    """
    x = np.log(np.asarray(sizes, dtype=np.float64))
    y = np.log(np.asarray(times, dtype=np.float64))
    if len(np.unique(x)) < 2:
        raise ValueError(
            f"`sizes` has {len(np.unique(x))} distinct values, expected at least 2"
        )
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean()) / sxx)
    residuals = y - y.mean() - slope * dx
    ss_residual = float(residuals @ residuals)
    ss_total = float((y - y.mean()) @ (y - y.mean()))
    se = math.sqrt(ss_residual / (len(x) - 2) / sxx) if len(x) > 2 else math.nan
    r2 = 1 - ss_residual / ss_total if ss_total > 0 else math.nan
    return slope, se, r2


def _lines(rows: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """Yield (against, fixed, rows with a column `x`) for each line through the grid.

    One line over all sizes against N × L, one against L for each N that was
    timed at two or more L, and one against N for each L timed at two or more N.
    """
    yield ELEMENTS, "", rows.assign(x=rows["n"] * rows["classes"])
    for n, line in rows.groupby("n"):
        if line["classes"].nunique() >= 2:
            yield "L", f"N = {int(n)}", line.assign(x=line["classes"])
    for classes, line in rows.groupby("classes"):
        if line["n"].nunique() >= 2:
            yield "N", f"L = {int(classes)}", line.assign(x=line["n"])


def _per_machine(function, summary: pd.DataFrame) -> pd.DataFrame:
    """Apply `function` to each machine's rows and put a `machine` column first."""
    frames = []
    for machine in dict.fromkeys(summary["machine"]):
        rows = summary[summary["machine"] == machine].drop(columns="machine")
        frame = function(rows)
        frame.insert(0, "machine", machine)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def scaling_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Fit each backend's slopes for every line through the sizes it was timed at.

    `summary` comes from softgrad.summary.summarize. Lines with fewer than two
    distinct sizes are left out. Returns SCALING_COLUMN_NAMES, after a
    `machine` column when `summary` has one (summarize_machines).
    """
    if "machine" in summary.columns:
        return _per_machine(scaling_table, summary)
    records = []
    for (family, dtype, backend), rows in summary.groupby(
        ["family", "dtype", "backend"], sort=False
    ):
        for against, fixed, line in _lines(rows):
            if line["x"].nunique() < 2:
                continue
            slope, se, r2 = fit_slope(line["x"], line["median_s"])
            records.append(
                {
                    "family": family,
                    "dtype": dtype,
                    "backend": backend,
                    "against": against,
                    "fixed": fixed,
                    "points": len(line),
                    "smallest": int(line["x"].min()),
                    "largest": int(line["x"].max()),
                    "slope": slope,
                    "slope_se": se,
                    "r2": r2,
                }
            )
    frame = pd.DataFrame(records, columns=list(SCALING_COLUMN_NAMES))
    return _sorted(frame, summary, "against", ["fixed", "backend"])


def _sorted(
    frame: pd.DataFrame, summary: pd.DataFrame, line: str, keys: list[str]
) -> pd.DataFrame:
    """Sort by family and dtype in the summary's order, the `line` column, `keys`."""
    family_order = {family: i for i, family in enumerate(families(summary))}
    dtype_order = {d: i for i, d in enumerate(dict.fromkeys(summary["dtype"]))}
    ranked = frame.assign(
        _family=frame["family"].map(family_order),
        _dtype=frame["dtype"].map(dtype_order),
        _line=frame[line].map({ELEMENTS: 0, "L": 1, "N": 2}),
    )
    ranked = ranked.sort_values(["_family", "_dtype", "_line", *keys], kind="stable")
    return ranked.drop(columns=["_family", "_dtype", "_line"]).reset_index(drop=True)


def _crossing(x0, x1, r0, r1) -> float:
    """Interpolate where log(ratio) crosses 0 between (log x0, r0) and (log x1, r1)."""
    share = r0 / (r0 - r1)
    return math.exp(math.log(x0) + share * (math.log(x1) - math.log(x0)))


def crossovers(summary: pd.DataFrame) -> pd.DataFrame:
    """Find every pair of backends whose order swaps between neighboring sizes.

    Along each line of _lines, two backends timed at the same sizes cross
    where the ratio of their times passes 1. Returns CROSSOVER_COLUMN_NAMES,
    one row per crossing, after a `machine` column when `summary` has one.
    """
    if "machine" in summary.columns:
        return _per_machine(crossovers, summary)
    records = []
    for (family, dtype), rows in summary.groupby(["family", "dtype"], sort=False):
        for along, fixed, line in _lines(rows):
            # One log time per backend and size: on the N × L line, two sizes
            # with the same product are averaged.
            log_times = line.assign(log_time=np.log(line["median_s"])).pivot_table(
                index="x", columns="backend", values="log_time", aggfunc="mean"
            )
            for first, second in itertools.combinations(log_times.columns, 2):
                pair = log_times[[first, second]].dropna()
                ratio = (pair[first] - pair[second]).to_numpy()
                sizes = pair.index.to_numpy()
                for i in range(len(sizes) - 1):
                    if ratio[i] * ratio[i + 1] >= 0:
                        continue
                    below, above = (first, second) if ratio[i] < 0 else (second, first)
                    records.append(
                        {
                            "family": family,
                            "dtype": dtype,
                            "along": along,
                            "fixed": fixed,
                            "faster_below": below,
                            "faster_above": above,
                            "at": _crossing(
                                sizes[i], sizes[i + 1], ratio[i], ratio[i + 1]
                            ),
                            "below": int(sizes[i]),
                            "above": int(sizes[i + 1]),
                            "margin_below": math.exp(abs(ratio[i])),
                            "margin_above": math.exp(abs(ratio[i + 1])),
                        }
                    )
    frame = pd.DataFrame(records, columns=list(CROSSOVER_COLUMN_NAMES))
    return _sorted(frame, summary, "along", ["fixed", "at", "faster_above"])


def leading_crossovers(
    summary: pd.DataFrame, table: pd.DataFrame, min_margin: float = MIN_MARGIN
) -> pd.DataFrame:
    """Keep the clear crossovers that involve a backend fastest somewhere in its family.

    A contender is a backend that is fastest at one size and dtype at least.
    Crossings of two backends that are never fastest do not help to choose a
    backend, and the baseline is left out because it is the reference. A
    crossing is clear when each backend leads by `min_margin` on its side.
    """
    fastest = summary[summary["time_vs_fastest"] == 1.0]
    contenders = {
        family: set(rows["backend"]) for family, rows in fastest.groupby("family")
    }
    keep = []
    for row in table.itertuples():
        pair = {row.faster_below, row.faster_above}
        keep.append(
            bool(pair & contenders.get(row.family, set()))
            and baseline_backend(row.family) not in pair
            and min(row.margin_below, row.margin_above) >= min_margin
        )
    return table[keep].reset_index(drop=True)


def _markdown(frame: pd.DataFrame, columns) -> str:
    formatted = pd.DataFrame(
        {
            column.header: [column.format(v) for v in frame[column.name]]
            for column in columns
        },
        dtype=object,
    )
    return formatted.to_markdown(index=False, disable_numparse=True)


def scaling_markdown(slopes: pd.DataFrame, crossings: pd.DataFrame) -> str:
    """Render the slopes and crossovers as markdown, with a legend of the columns."""
    lines = ["# softgrad scaling", "", "## Slopes", ""]
    lines += [_markdown(slopes, SCALING_COLUMNS) if len(slopes) else "No fit.", ""]
    lines += ["## Crossovers", ""]
    if len(crossings):
        lines += [_markdown(crossings, CROSSOVER_COLUMNS), ""]
    else:
        lines += ["No two backends swap places between neighboring sizes.", ""]
    lines += ["## Columns", ""]
    for column in SCALING_COLUMNS + CROSSOVER_COLUMNS[4:]:
        lines.append(f"- **{column.header}**: {column.description}")
    return "\n".join(lines) + "\n"


def write_scaling(summary: pd.DataFrame, folder: str | os.PathLike) -> list[Path]:
    """Write scaling.csv, crossovers.csv and scaling.md into `folder` atomically."""
    folder = Path(folder)
    slopes = scaling_table(summary)
    crossings = crossovers(summary)
    paths = [
        write_atomic(folder / "scaling.csv", slopes.to_csv(index=False)),
        write_atomic(folder / "crossovers.csv", crossings.to_csv(index=False)),
        write_atomic(folder / "scaling.md", scaling_markdown(slopes, crossings)),
    ]
    log.info("wrote %s", ", ".join(str(path) for path in paths))
    return paths
