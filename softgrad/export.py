"""A tidy long-format table of every run: one row per case, statistic and run.

Rows are (run, machine, backend, family, N, L, dtype, statistic) with one
value and its unit, written as CSV or Parquet with a schema version.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from softgrad.grid import Size, bytes_moved
from softgrad.machine import machine_label
from softgrad.summary import CASE_KEY, read_results, write_atomic

log = logging.getLogger(__name__)

# Raise on any change to the columns, the statistics or their units.
EXPORT_SCHEMA_VERSION = 1

TIDY_COLUMNS = (
    "schema_version",
    "run",
    "started",
    "commit",
    "machine",
    "family",
    "backend",
    "n",
    "classes",
    "dtype",
    "statistic",
    "value",
    "unit",
)

# statistic -> (where it is in a loaded row, unit). pytest-benchmark's stats
# are per call; compile and conversion times are measured once per case.
STATISTICS = {
    "min": ("min", "s"),
    "median": ("median", "s"),
    "q1": ("q1", "s"),
    "q3": ("q3", "s"),
    "iqr": ("iqr", "s"),
    "mean": ("mean", "s"),
    "stddev": ("stddev", "s"),
    "rounds": ("rounds", "count"),
    "compile": ("compile_s", "s"),
    "convert": ("convert_s", "s"),
    "max_error": ("max_error", "relative"),
}
FORMATS = ("csv", "parquet")


class ExportError(ValueError):
    """An export that cannot be written: an unknown format or a missing library."""


def _run_name(run: dict) -> str:
    return Path(run["path"]).stem


def _commit(run: dict) -> str:
    commit = run.get("commit_info") or {}
    identifier = str(commit.get("id") or "")
    return identifier + ("+dirty" if identifier and commit.get("dirty") else "")


def tidy_rows(path: str | os.PathLike) -> list[dict]:
    """Return the tidy rows of one raw results file.

    Statistics that the file does not have (no compile time for numpy
    backends, say) are left out rather than written as NaN. `gb_per_s` is the
    effective bandwidth of the median, as the summary computes it.
    """
    timed, _, run = read_results(path)
    common = {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "run": _run_name(run),
        "started": str(run.get("started") or run.get("datetime") or ""),
        "commit": _commit(run),
        "machine": machine_label(run),
    }
    latest = {tuple(row[key] for key in CASE_KEY): row for row in timed}
    rows = []
    for row in latest.values():
        case = {key: row[key] for key in CASE_KEY}
        values = {
            name: (row.get(field), unit) for name, (field, unit) in STATISTICS.items()
        }
        moved = bytes_moved(row["family"], Size(row["n"], row["classes"]), row["dtype"])
        values["gb_per_s"] = (moved / row["median"] / 1e9, "GB/s")
        for statistic, (value, unit) in values.items():
            if value is None or not math.isfinite(float(value)):
                continue
            rows.append(
                common
                | case
                | {"statistic": statistic, "value": float(value), "unit": unit}
            )
    return rows


def tidy_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Build the tidy table of several raw results files, each run kept apart.

    Unlike softgrad.summary.load_results, a case timed in two files gives rows
    for both runs. Returns TIDY_COLUMNS with fixed dtypes, so that CSV and
    Parquet agree.
    """
    rows = [row for path in paths for row in tidy_rows(path)]
    frame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    frame = frame.astype(
        {
            "schema_version": "int64",
            "n": "int64",
            "classes": "int64",
            "value": "float64",
        }
    )
    for column in set(TIDY_COLUMNS) - {"schema_version", "n", "classes", "value"}:
        frame[column] = frame[column].astype(str)
    return frame


def format_of(path: str | os.PathLike, requested: str | None = None) -> str:
    """Return "csv" or "parquet": `requested`, else from the file name's suffix."""
    chosen = requested or Path(path).suffix.lower().lstrip(".")
    if chosen not in FORMATS:
        raise ExportError(
            f"unknown export format `{chosen}` for `{path}`: expected a .csv or"
            " .parquet file name, or a format of csv or parquet"
        )
    return chosen


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    if importlib.util.find_spec("pyarrow") is None:
        raise ExportError(
            "writing Parquet needs pyarrow, which is not installed: run"
            " `pip install 'softgrad[parquet]'`, or export to a .csv file"
        )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def write_tidy(
    frame: pd.DataFrame, path: str | os.PathLike, format: str | None = None
) -> Path:
    """Write the tidy table to `path` as CSV or Parquet, atomically."""
    chosen = format_of(path, format)
    if chosen == "parquet":
        content = _parquet_bytes(frame)
    else:
        content = frame.to_csv(index=False)
    path = write_atomic(path, content)
    log.info("wrote %d tidy rows to %s", len(frame), path)
    return path
