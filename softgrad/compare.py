"""Compare two sweeps case by case: the ratio of median times and its uncertainty.

The interval comes from a bootstrap over the samples that pytest-benchmark
stores in `stats.data`; a file without samples falls back to the quartiles.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, Group
from rich.table import Table

from softgrad.cases import DEFAULT_VARIANT
from softgrad.machine import machine_label
from softgrad.summary import (
    CASE_KEY,
    Column,
    format_ratio,
    format_seconds,
    read_results,
    sort_summary,
    write_atomic,
)

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
RESAMPLES = 1000  # bootstrap resamples per case
SEED = 20261204
MIN_SAMPLES = 5  # fewer samples than this give no bootstrap, only the quartiles
# The bootstrap interval covers only the noise between the rounds of one run.
# Two runs also differ by the load of other processes and by memory layout, so
# a change is flagged only when its interval also clears this factor. A busy
# machine can shift every case by more, which `relative=True` takes out.
DEFAULT_MIN_CHANGE = 1.10
# The notch of a box plot, median +- 1.57 IQR / sqrt(n), as matplotlib's boxplot
# draws it (matplotlib.cbook.boxplot_stats): a rough 95% interval of the median.
NOTCH = 1.57

SLOWER, FASTER, SAME = "slower", "faster", "same"


COMPARE_COLUMNS = (
    Column("family", "family", "the gradient computed, one of impls.FAMILIES"),
    Column("n", "N", "batch size: rows of the input", lambda v: f"{int(v)}"),
    Column("classes", "L", "classes: columns of the input", lambda v: f"{int(v)}"),
    Column("dtype", "dtype", "floating-point type of the inputs and output"),
    Column("backend", "backend", "the implementation, as impls.backends() names it"),
    Column("old_median_s", "old", "median time per call in OLD", format_seconds),
    Column("new_median_s", "new", "median time per call in NEW", format_seconds),
    Column(
        "ratio",
        "new / old",
        "NEW's median time divided by OLD's: above 1 is slower",
        format_ratio,
    ),
    Column(
        "ratio_low",
        "low",
        "lower end of the ratio's 95% confidence interval",
        format_ratio,
    ),
    Column(
        "ratio_high",
        "high",
        "upper end of the ratio's 95% confidence interval",
        format_ratio,
    ),
    Column(
        "change",
        "change",
        "slower or faster when the whole interval lies beyond the minimum change,"
        " else same",
    ),
    Column(
        "method",
        "interval",
        "bootstrap: resampled from the stored samples; quartiles: from the IQR"
        " alone, for files without samples",
    ),
)
COMPARE_COLUMN_NAMES = tuple(column.name for column in COMPARE_COLUMNS)


def median_interval(
    samples: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES
) -> np.ndarray:
    """Return `resamples` bootstrap medians of `samples`, one per resample."""
    samples = np.asarray(samples, dtype=np.float64)
    medians = np.empty(resamples)
    # Chunks keep the index array near 200 x len(samples) at a time.
    chunk = 200
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        picks = rng.integers(0, len(samples), size=(count, len(samples)))
        medians[start : start + count] = np.median(samples[picks], axis=1)
    return medians


def bootstrap_ratio(
    old: Sequence[float],
    new: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """Return median(new) / median(old) and its percentile bootstrap interval.

    Each file's samples are resampled on their own, since the two runs are
    independent. The seed is fixed so that a comparison prints the same
    interval every time.
    """
    old = np.asarray(old, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    for name, samples in (("old", old), ("new", new)):
        if len(samples) < 1 or not (samples > 0).all():
            raise ValueError(
                f"`{name}` has {len(samples)} samples, expected at least one and"
                " all positive"
            )
    rng = np.random.default_rng(seed)
    ratios = median_interval(new, rng, resamples) / median_interval(old, rng, resamples)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(np.median(new) / np.median(old)), float(low), float(high)


def quartile_ratio(old: dict, new: dict) -> tuple[float, float, float]:
    """Return the ratio of medians and a rough interval from each file's IQR.

    `old` and `new` hold pytest-benchmark's `median`, `iqr` and `rounds`. Each
    median gets the notch interval median +- 1.57 IQR / sqrt(rounds), and the
    ratio's interval runs from the lowest to the highest quotient of the ends.
    """

    def ends(stats: dict) -> tuple[float, float]:
        half = NOTCH * stats["iqr"] / math.sqrt(max(stats["rounds"], 1))
        # With few and spread rounds a notch can reach below zero, which no time can.
        return max(stats["median"] - half, stats["median"] * 1e-3), stats[
            "median"
        ] + half

    old_low, old_high = ends(old)
    new_low, new_high = ends(new)
    return new["median"] / old["median"], new_low / old_high, new_high / old_low


def classify(low: float, high: float, min_change: float) -> str:
    """Classify an interval as wholly beyond `min_change` either way, or neither."""
    if low > min_change:
        return SLOWER
    if high < 1 / min_change:
        return FASTER
    return SAME


def _rows_by_case(path: str | os.PathLike) -> tuple[dict, dict]:
    timed, _, run = read_results(path)
    return {tuple(row[key] for key in CASE_KEY): row for row in timed}, run


def compare_files(
    old_path: str | os.PathLike,
    new_path: str | os.PathLike,
    min_change: float = DEFAULT_MIN_CHANGE,
    confidence: float = CONFIDENCE,
    relative: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Compare every case timed in both files.

    Returns the comparison with COMPARE_COLUMN_NAMES, sorted like the summary,
    and a dict with the cases found only in `old_path` (`only_old`), only in
    `new_path` (`only_new`), both files' machine names (`machines`) and the
    geometric mean of all ratios (`shift`). With `relative`, every ratio and
    interval is divided by that shift before it is classified, which takes out
    a slowdown of the whole machine but also a change that slows every case.
    """
    if not min_change >= 1:
        raise ValueError(f"`min_change` is {min_change}, expected 1 or more")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` is {confidence}, expected between 0 and 1")
    old, old_run = _rows_by_case(old_path)
    new, new_run = _rows_by_case(new_path)
    common = [case for case in old if case in new]
    shift = 1.0
    if common:
        logs = [math.log(new[case]["median"] / old[case]["median"]) for case in common]
        shift = math.exp(sum(logs) / len(logs))
    divisor = shift if relative else 1.0
    rows = []
    for case in common:
        before, after = old[case], new[case]
        samples = (before.get("samples") or [], after.get("samples") or [])
        if min(len(s) for s in samples) >= MIN_SAMPLES:
            ratio, low, high = bootstrap_ratio(*samples, confidence=confidence)
            method = "bootstrap"
        else:
            ratio, low, high = quartile_ratio(before, after)
            method = "quartiles"
        ratio, low, high = ratio / divisor, low / divisor, high / divisor
        rows.append(
            dict(zip(CASE_KEY, case))
            | {
                "old_median_s": before["median"],
                "new_median_s": after["median"],
                "ratio": ratio,
                "ratio_low": low,
                "ratio_high": high,
                "change": classify(low, high, min_change),
                "method": method,
            }
        )
    frame = pd.DataFrame(
        rows, columns=list(CASE_KEY) + list(COMPARE_COLUMN_NAMES[5:])
    )
    if len(frame):
        frame = sort_summary(frame.rename(columns={"new_median_s": "median_s"}))
        frame = frame.rename(columns={"median_s": "new_median_s"})
    extra = {
        "only_old": sorted(set(old) - set(new)),
        "only_new": sorted(set(new) - set(old)),
        "machines": (machine_label(old_run), machine_label(new_run)),
        "shift": shift,
        "relative": relative,
    }
    log.info("compared %d cases", len(frame))
    columns = list(COMPARE_COLUMN_NAMES)
    if (frame["variant"] != DEFAULT_VARIANT).any():
        columns.insert(columns.index("dtype") + 1, "variant")
    return frame[columns].reset_index(drop=True), extra


def regressions(
    comparison: pd.DataFrame, factor: float, min_time: float = 0.0
) -> pd.DataFrame:
    """Return the rows flagged slower whose ratio is above `factor`.

    Cases whose OLD median is below `min_time` seconds are left out: at a few
    microseconds per call, two runs of the same code on a busy machine can
    differ by more than 1.5x.
    """
    slower = comparison["change"] == SLOWER
    timed_long = comparison["old_median_s"] >= min_time
    return comparison[slower & (comparison["ratio"] > factor) & timed_long]


def write_comparison(comparison: pd.DataFrame, path: str | os.PathLike):
    """Write the comparison as CSV to `path` atomically and return the path."""
    return write_atomic(path, comparison.to_csv(index=False))


_STYLE = {SLOWER: "bold red", FASTER: "bold green", SAME: None}


def _format_interval(low: float, high: float) -> str:
    return f"{format_ratio(low).rstrip('×')}–{format_ratio(high).rstrip('×')}"


def terminal_table(comparison: pd.DataFrame) -> Group:
    """Build one rich table per family: times, ratio with its interval, change.

    Size and dtype are shown once per group, as in the summary's table, so
    that the table fits 80 columns.
    """
    tables = []
    for family, rows in comparison.groupby("family", sort=False):
        table = Table(
            title=family,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1, 0, 0),
            pad_edge=False,
            show_edge=False,
        )
        for header in ("N × L", "dtype", "backend"):
            table.add_column(header, no_wrap=True)
        for header in ("old", "new", "new/old (95% CI)"):
            table.add_column(header, justify="right", no_wrap=True)
        table.add_column("change", no_wrap=True)
        previous = None
        for _, row in rows.iterrows():
            group = (row["n"], row["classes"], row["dtype"])
            where = [f"{int(row['n'])}×{int(row['classes'])}", row["dtype"]]
            if group == previous:
                where = ["", ""]
            elif previous is not None:
                table.add_section()
            previous = group
            table.add_row(
                *where,
                row["backend"],
                format_seconds(row["old_median_s"]),
                format_seconds(row["new_median_s"]),
                f"{format_ratio(row['ratio'])}"
                f" ({_format_interval(row['ratio_low'], row['ratio_high'])})",
                row["change"],
                style=_STYLE[row["change"]],
            )
        tables.append(table)
    return Group(*tables)


def counts_line(comparison: pd.DataFrame, min_change: float) -> str:
    """Sum the comparison up in one line: how many slower, faster and the same."""
    counts = comparison["change"].value_counts()
    return (
        f"{counts.get(SLOWER, 0)} slower, {counts.get(FASTER, 0)} faster,"
        f" {counts.get(SAME, 0)} within the noise (a change must clear"
        f" {min_change:g}x with {CONFIDENCE:.0%} confidence)"
    )


def print_comparison(
    comparison: pd.DataFrame, extra: dict, min_change: float, console: Console
) -> None:
    """Print the tables, the counts and the cases that only one file has."""
    old_machine, new_machine = extra["machines"]
    if old_machine != new_machine:
        console.print(
            f"[yellow]the files come from different machines: {old_machine} and"
            f" {new_machine}[/yellow]"
        )
    console.print(terminal_table(comparison))
    console.print(counts_line(comparison, min_change))
    shift = extra["shift"]
    if extra["relative"]:
        console.print(
            f"ratios are relative: each is divided by {format_ratio(shift)}, the"
            " geometric mean of all ratios"
        )
    elif max(shift, 1 / shift) > min_change:
        console.print(
            f"[yellow]the cases moved together by {format_ratio(shift)} (geometric"
            " mean): a busier or quieter machine moves every case alike, so run"
            " both again on an idle machine, or pass --relative to compare the"
            " cases with each other[/yellow]"
        )
    for key, label in (("only_old", "OLD"), ("only_new", "NEW")):
        cases = extra[key]
        if cases:
            names = ", ".join(
                f"{family}/{backend} {n}x{classes} {dtype}"
                for family, backend, n, classes, dtype in cases[:5]
            )
            more = f" and {len(cases) - 5} more" if len(cases) > 5 else ""
            console.print(f"{len(cases)} cases timed only in {label}: {names}{more}")
