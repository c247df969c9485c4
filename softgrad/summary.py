"""Summary tables of a sweep: load raw pytest-benchmark files, compare backends, write.

Every table (DataFrame, CSV, markdown, HTML, terminal) takes its columns from
COLUMNS, so a column is named and described in one place.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, Group
from rich.table import Table

import impls
from softgrad.cases import DEFAULT_VARIANT, SoftgradError
from softgrad.grid import DTYPES, Size, bytes_moved
from softgrad.machine import machine_label
from softgrad.timing import SCHEMA_VERSION

log = logging.getLogger(__name__)

MISSING = "—"  # how tables show a value that was not measured


def format_seconds(seconds: float) -> str:
    """Format a duration with three significant digits in ns, µs, ms or s."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    seconds = float(f"{seconds:.3g}")  # so that 999.96 µs reads as 1.00 ms
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{_significant(seconds / scale)} {unit}"
    raise AssertionError("unreachable")


def _significant(value: float) -> str:
    """Format with three significant digits, keeping zeros: 1.20, 12.0, 120, 1,235."""
    if abs(value) >= 999.5:
        return f"{value:,.0f}"
    return f"{value:#.3g}".rstrip(".")


def format_ratio(ratio: float) -> str:
    """Format a speedup or time ratio as "1.23×", "45.6×" or "1,234×"."""
    if ratio is None or not math.isfinite(ratio):
        return MISSING
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    return f"{ratio:.2f}×"


def format_rate(rate: float) -> str:
    """Format a bandwidth in GB/s with three significant digits."""
    if rate is None or not math.isfinite(rate):
        return MISSING
    return _significant(rate)


def _format_error(error: float) -> str:
    if error is None or not math.isfinite(error):
        return MISSING
    return f"{error:.1e}"


def _format_integer(value) -> str:
    return f"{int(value):d}"


def _format_flag(value) -> str:
    return "yes" if bool(value) else ""


@dataclass(frozen=True)
class Column:
    """One column of the summary: its DataFrame and CSV name, header and meaning."""

    name: str
    header: str
    description: str
    format: Callable[[object], str] = str


COLUMNS = (
    Column("family", "family", "the gradient computed, one of impls.FAMILIES"),
    Column("n", "N", "batch size: rows of the input", _format_integer),
    Column("classes", "L", "classes: columns of the input", _format_integer),
    Column("dtype", "dtype", "floating-point type of the inputs and output"),
    Column("backend", "backend", "the implementation, as impls.backends() names it"),
    Column(
        "baseline",
        "baseline",
        "whether this is the family's textbook backend that speedups are measured"
        " against",
        _format_flag,
    ),
    Column("median_s", "median", "median time per call, in seconds", format_seconds),
    Column(
        "iqr_s",
        "IQR",
        "interquartile range of the time per call, in seconds",
        format_seconds,
    ),
    Column(
        "q1_s",
        "Q1",
        "first quartile of the time per call, in seconds",
        format_seconds,
    ),
    Column(
        "q3_s",
        "Q3",
        "third quartile of the time per call, in seconds",
        format_seconds,
    ),
    Column("rounds", "rounds", "number of timed calls", _format_integer),
    Column(
        "speedup_vs_baseline",
        "speedup vs baseline",
        "the baseline's median time divided by this backend's; empty when the"
        " baseline was not timed at this size and dtype",
        format_ratio,
    ),
    Column(
        "time_vs_fastest",
        "time / fastest",
        "this backend's median time divided by the fastest backend's at the same"
        " family, size and dtype; 1.00× marks the fastest",
        format_ratio,
    ),
    Column(
        "gb_per_s",
        "GB/s",
        "effective bandwidth: the bytes a call must read and write"
        " (softgrad.grid.bytes_moved) divided by the median time, in 10^9 bytes/s",
        format_rate,
    ),
    Column(
        "max_error",
        "rel. error",
        "max |result - reference| / max |reference| against the float64 oracle",
        _format_error,
    ),
    Column(
        "compile_s",
        "compile",
        "numba compile time of the first call, in seconds, kept out of the median",
        format_seconds,
    ),
)

COLUMN = {column.name: column for column in COLUMNS}
SUMMARY_COLUMNS = tuple(column.name for column in COLUMNS)

# The columns of the per-family tables that a person reads: the family is the
# title, and the IQR stands for both quartiles, which the plots show.
TABLE_COLUMNS = tuple(
    name for name in SUMMARY_COLUMNS[1:] if name not in ("q1_s", "q3_s")
)
TERMINAL_COLUMNS = (
    "n",
    "classes",
    "dtype",
    "backend",
    "median_s",
    "speedup_vs_baseline",
    "time_vs_fastest",
    "gb_per_s",
)

# The fields of a raw results file: a case, pytest-benchmark's stats, and the file.
# A case's variant is stored since variants were added; older files lack it and
# are read as the default variant.
CASE_KEY = ("family", "backend", "n", "classes", "dtype", "variant")
_STORED_KEY = CASE_KEY[:5]
EXTRA_FIELDS = _STORED_KEY + (
    "baseline",
    "jacobian",
    "compile_s",
    "max_error",
    "allocates_output",
)
# Fields that older files lack: loaded as NaN where missing.
OPTIONAL_FIELDS = ("convert_s",)
STAT_FIELDS = ("min", "median", "iqr", "q1", "q3", "mean", "stddev", "rounds")
TIMING_COLUMNS = (
    EXTRA_FIELDS + ("variant",) + OPTIONAL_FIELDS + STAT_FIELDS + ("source",)
)
NOT_TIMED_COLUMNS = CASE_KEY + ("status", "reason", "source")

_GROUP = ["family", "n", "classes", "dtype", "variant"]
_TEXT_COLUMNS = ("family", "dtype", "backend", "baseline")  # aligned left


class ResultsFileError(SoftgradError, ValueError):
    """A results file that is missing, not JSON, or not written by softgrad's sweep."""


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"results file `{path}` not found") from None
    except UnicodeDecodeError as error:
        raise ResultsFileError(
            f"results file `{path}` is not valid JSON: it is not UTF-8 text"
            f" ({error.reason} at byte {error.start})"
        ) from None
    except OSError as error:
        raise ResultsFileError(
            f"cannot read results file `{path}`: {error.strerror}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsFileError(
            f"results file `{path}` is not valid JSON ({error.msg} at line"
            f" {error.lineno}, column {error.colno}); an interrupted run may have"
            " truncated it"
        ) from None


def _missing(record, keys: Iterable[str]) -> list[str]:
    if not isinstance(record, dict):
        return list(keys)
    return [key for key in keys if key not in record]


def _benchmark_row(path: Path, benchmark) -> dict:
    name = benchmark.get("name", "?") if isinstance(benchmark, dict) else "?"
    extra = benchmark.get("extra_info") if isinstance(benchmark, dict) else None
    stats = benchmark.get("stats") if isinstance(benchmark, dict) else None
    missing = [f"extra_info.{key}" for key in _missing(extra, EXTRA_FIELDS)]
    missing += [f"stats.{key}" for key in _missing(stats, STAT_FIELDS)]
    if missing:
        raise ResultsFileError(
            f"results file `{path}`: benchmark `{name}` lacks {', '.join(missing)};"
            " expected a benchmark timed by softgrad's sweep"
        )
    row = {key: extra[key] for key in EXTRA_FIELDS}
    row["variant"] = extra.get("variant", DEFAULT_VARIANT)
    row.update({key: extra.get(key) for key in OPTIONAL_FIELDS})
    row.update({key: stats[key] for key in STAT_FIELDS})
    row["source"] = str(path)
    # Every timed sample, when the file keeps them; no table has a column for them.
    row["samples"] = stats.get("data")
    return row


def _not_timed_rows(path: Path, section: dict) -> list[dict]:
    rows = []
    for status in ("skipped", "failed"):
        entries = section.get(status, [])
        if not isinstance(entries, list):
            raise ResultsFileError(
                f"results file `{path}`: `softgrad.{status}` is"
                f" {type(entries).__name__}, expected a list"
            )
        for entry in entries:
            missing = _missing(entry, _STORED_KEY + ("reason",))
            if missing:
                raise ResultsFileError(
                    f"results file `{path}`: an entry of `softgrad.{status}` lacks"
                    f" {', '.join(missing)}"
                )
            rows.append(
                {key: entry[key] for key in _STORED_KEY}
                | {
                    "variant": entry.get("variant", DEFAULT_VARIANT),
                    "status": status,
                    "reason": str(entry["reason"]),
                    "source": str(path),
                }
            )
    return rows


def read_results(path: str | os.PathLike) -> tuple[list[dict], list[dict], dict]:
    """Read one raw results file: its timed rows, not-timed rows and run metadata.

    Raises ResultsFileError, naming the file, when it is not the JSON that
    softgrad's sweep writes through pytest-benchmark.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsFileError(
            f"results file `{path}` is not pytest-benchmark JSON: expected an object"
            " with a `benchmarks` list, as `pytest --benchmark-json FILE` writes"
        )
    section = data.get("softgrad")
    if not isinstance(section, dict):
        raise ResultsFileError(
            f"results file `{path}` has no `softgrad` section, so softgrad's sweep"
            " did not write it; time with `pytest tests/benchmarks --benchmark-only"
            " --benchmark-json FILE` in this repository"
        )
    version = section.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsFileError(
            f"results file `{path}` has `schema_version` {version!r}, expected"
            f" {SCHEMA_VERSION}"
        )

    timed = [_benchmark_row(path, benchmark) for benchmark in data["benchmarks"]]
    not_timed = _not_timed_rows(path, section)
    run = {
        key: value for key, value in section.items() if key not in ("skipped", "failed")
    }
    run["path"] = str(path)
    # The command line stores the machine either in its own section or in softgrad's.
    run["machine"] = data.get("machine", section.get("machine"))
    run["machine_info"] = data.get("machine_info")
    run["commit_info"] = data.get("commit_info")
    run["datetime"] = data.get("datetime")
    run["pytest_benchmark_version"] = data.get("version")
    return timed, not_timed, run


def _case(row: dict) -> tuple:
    return tuple(row[key] for key in CASE_KEY)


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for key in ("n", "classes"):
        frame[key] = frame[key].astype("int64")
    return frame


def load_results(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Load raw results files into timings, not-timed cases and run metadata.

    A case is (family, backend, n, classes, dtype). When several files contain
    a case, timed or not, the last file that contains it wins. The timings have
    TIMING_COLUMNS, the not-timed cases NOT_TIMED_COLUMNS with `status`
    "skipped" or "failed", and `runs` one dict per file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [read_results(path) for path in paths]
    if not files:
        raise ValueError("`paths` is empty, expected at least one results file")

    owner = {}  # case -> index of the last file that contains it
    for index, (timed, not_timed, _) in enumerate(files):
        for row in timed + not_timed:
            owner[_case(row)] = index
    timed_rows, not_timed_rows = [], []
    for index, (timed, not_timed, _) in enumerate(files):
        timed_rows += [row for row in timed if owner[_case(row)] == index]
        not_timed_rows += [row for row in not_timed if owner[_case(row)] == index]

    timings = _frame(timed_rows, TIMING_COLUMNS)
    timings = timings.drop_duplicates(subset=list(CASE_KEY), keep="last")
    for key in ("baseline", "jacobian", "allocates_output"):
        timings[key] = timings[key].astype(bool)
    for key in ("compile_s", "max_error") + OPTIONAL_FIELDS + STAT_FIELDS:
        timings[key] = pd.to_numeric(timings[key], errors="coerce").astype("float64")
    timings["rounds"] = timings["rounds"].astype("int64")
    not_timed = _frame(not_timed_rows, NOT_TIMED_COLUMNS).drop_duplicates(
        subset=list(CASE_KEY) + ["status", "reason"]
    )
    log.info(
        "loaded %d timings and %d cases not timed from %d files",
        len(timings),
        len(not_timed),
        len(files),
    )
    return (
        timings.reset_index(drop=True),
        not_timed.reset_index(drop=True),
        [run for _, _, run in files],
    )


def summarize_machines(
    paths: Iterable[str | os.PathLike],
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Load and summarize raw files machine by machine, so machines stay apart.

    Files are grouped by softgrad.machine.machine_label. Each group is loaded
    with load_results and summarized on its own, so a case timed on two
    machines gives two rows. With several machines, the summary and the
    not-timed cases get a `machine` column; with one, they are as summarize
    and load_results return them.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("`paths` is empty, expected at least one results file")
    groups: dict[str, list] = {}
    for path in paths:
        _, _, run = read_results(path)
        groups.setdefault(machine_label(run), []).append(path)
    summaries, skipped, runs = [], [], []
    for label, group in groups.items():
        timings, not_timed, group_runs = load_results(group)
        summary = summarize(timings)
        if len(groups) > 1:
            summary.insert(0, "machine", label)
            not_timed.insert(0, "machine", label)
        summaries.append(summary)
        skipped.append(not_timed)
        runs += group_runs
    return (
        pd.concat(summaries, ignore_index=True),
        pd.concat(skipped, ignore_index=True),
        runs,
    )


def baseline_backend(family: str, timings: pd.DataFrame | None = None) -> str | None:
    """Return the name of `family`'s baseline backend, or None when it has none.

    The registry decides. A family the registry does not know falls back to
    the rows of `timings` flagged `baseline`.
    """
    try:
        registered = impls.backends(family)
    except impls.InputError:
        registered = []
    for backend in registered:
        if backend.baseline:
            return backend.name
    if timings is not None and not registered:
        flagged = timings[(timings["family"] == family) & timings["baseline"]]
        if len(flagged):
            return str(flagged["backend"].iloc[0])
    return None


def _rank(values: Sequence[str], order: Sequence[str]) -> list[int]:
    return [order.index(value) if value in order else len(order) for value in values]


def sort_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by family (registry order), size (N x L, then N), dtype, variant
    (default first), then time."""
    variants = frame["variant"] if "variant" in frame.columns else DEFAULT_VARIANT
    ranked = frame.assign(
        _family=_rank(list(frame["family"]), impls.FAMILIES),
        _elements=frame["n"] * frame["classes"],
        _dtype=_rank(list(frame["dtype"]), DTYPES),
        _variant=np.asarray(variants != DEFAULT_VARIANT, dtype=bool),
        _variant_name=variants,
    )
    ranked = ranked.sort_values(
        [
            "_family",
            "family",
            "_elements",
            "n",
            "_dtype",
            "dtype",
            "_variant",
            "_variant_name",
            "median_s",
        ],
        kind="stable",
    )
    hidden = ["_family", "_elements", "_dtype", "_variant", "_variant_name"]
    return ranked.drop(columns=hidden).reset_index(drop=True)


def summarize(timings: pd.DataFrame) -> pd.DataFrame:
    """Compare the backends of each family at each size and dtype.

    Returns one row per timed case with SUMMARY_COLUMNS: the median time and
    its IQR, the speedup over the family's baseline, the time relative to the
    fastest backend, and the effective GB/s. The speedup is NaN where the
    baseline was not timed at that size and dtype. Variants are compared
    within themselves; when any case is not of the default variant, a
    `variant` column follows `dtype`.
    """
    missing = [key for key in EXTRA_FIELDS + STAT_FIELDS if key not in timings.columns]
    if missing:
        raise ValueError(
            f"`timings` lacks columns {', '.join(missing)}; expected the timings"
            " that load_results returns"
        )
    frame = timings.rename(
        columns={"median": "median_s", "iqr": "iqr_s", "q1": "q1_s", "q3": "q3_s"}
    ).copy()
    if "variant" not in frame.columns:
        frame["variant"] = DEFAULT_VARIANT
    baselines = {
        family: baseline_backend(family, timings) for family in frame["family"].unique()
    }
    frame["baseline"] = [
        backend == baselines[family]
        for family, backend in zip(frame["family"], frame["backend"])
    ]

    fastest = frame.groupby(_GROUP)["median_s"].transform("min")
    frame["time_vs_fastest"] = frame["median_s"] / fastest
    baseline_times = frame.loc[frame["baseline"], _GROUP + ["median_s"]].rename(
        columns={"median_s": "_baseline_s"}
    )
    frame = frame.merge(baseline_times, on=_GROUP, how="left")
    frame["speedup_vs_baseline"] = frame["_baseline_s"] / frame["median_s"]

    moved = [
        bytes_moved(family, Size(int(n), int(classes)), dtype)
        for family, n, classes, dtype in zip(
            frame["family"], frame["n"], frame["classes"], frame["dtype"]
        )
    ]
    frame["gb_per_s"] = np.asarray(moved, dtype=np.float64) / frame["median_s"] / 1e9
    return sort_summary(frame[summary_columns(frame)])


def summary_columns(frame: pd.DataFrame) -> list[str]:
    """Return SUMMARY_COLUMNS, with `variant` after `dtype` when `frame` has a
    case of another variant than the default."""
    columns = list(SUMMARY_COLUMNS)
    if "variant" in frame.columns and (frame["variant"] != DEFAULT_VARIANT).any():
        columns.insert(columns.index("dtype") + 1, "variant")
    return columns


def with_variant_label(rows: pd.DataFrame) -> pd.DataFrame:
    """Return `rows` with a non-default variant appended to the dtype, for tables
    whose columns are fixed: "float64 peaked"."""
    if "variant" not in rows.columns:
        return rows
    labelled = rows.copy()
    labelled["dtype"] = [
        dtype if variant == DEFAULT_VARIANT else f"{dtype} {variant}"
        for dtype, variant in zip(rows["dtype"], rows["variant"])
    ]
    return labelled


def format_table(summary: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return `columns` of `summary` as text, headed by each column's header."""
    formatted = {
        COLUMN[name].header: [COLUMN[name].format(value) for value in summary[name]]
        for name in columns
    }
    return pd.DataFrame(formatted, index=summary.index, dtype=object)


def column_legend(columns: Sequence[str] = SUMMARY_COLUMNS) -> list[tuple[str, str]]:
    """Return (header, description) of each column, for a legend under a table."""
    return [(COLUMN[name].header, COLUMN[name].description) for name in columns]


def families(summary: pd.DataFrame) -> list[str]:
    """List the families of `summary` in the order the summary is sorted."""
    return list(dict.fromkeys(summary["family"]))


def write_atomic(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write `content` to `path` through a temporary file in the same folder.

    A reader sees the old file or the new one, never a part: os.replace swaps
    them in one step. The temporary file is removed when writing fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file readable by its owner only; use the umask instead.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def summary_markdown(summary: pd.DataFrame) -> str:
    """Render the summary as markdown: one table per family, then a column legend.

    A summary with a `machine` column (summarize_machines) gets one section of
    tables per machine.
    """
    lines = ["# softgrad summary", ""]
    if "machine" in summary.columns:
        for machine in dict.fromkeys(summary["machine"]):
            rows = summary[summary["machine"] == machine].drop(columns="machine")
            tables = summary_markdown(rows).split("\n## Columns\n")[0]
            lines += [f"## {machine}", ""]
            lines += [
                line.replace("## ", "### ", 1) for line in tables.splitlines()[2:]
            ]
        lines += ["## Columns", ""]
        lines += [f"- **{header}**: {text}" for header, text in column_legend()]
        return "\n".join(lines) + "\n"
    for family in families(summary):
        rows = summary[summary["family"] == family]
        baseline = baseline_backend(family)
        title = f"## {family}" + (f" (baseline: {baseline})" if baseline else "")
        alignment = [
            "left" if name in _TEXT_COLUMNS else "right" for name in TABLE_COLUMNS
        ]
        table = format_table(with_variant_label(rows), TABLE_COLUMNS).to_markdown(
            index=False, disable_numparse=True, colalign=alignment
        )
        lines += [title, "", table, ""]
    if summary.empty:
        lines += ["No case was timed.", ""]
    lines += ["## Columns", ""]
    lines += [f"- **{header}**: {text}" for header, text in column_legend()]
    return "\n".join(lines) + "\n"


def write_summary(
    summary: pd.DataFrame, folder: str | os.PathLike
) -> tuple[Path, Path]:
    """Write `folder`/summary.csv and `folder`/summary.md atomically; return both paths.

    The CSV has the raw numbers under the column names, the markdown the
    formatted values under the headers.
    """
    folder = Path(folder)
    columns = ["machine"] if "machine" in summary.columns else []
    columns += summary_columns(summary)
    csv = write_atomic(folder / "summary.csv", summary[columns].to_csv(index=False))
    markdown = write_atomic(folder / "summary.md", summary_markdown(summary))
    log.info("wrote %s and %s", csv, markdown)
    return csv, markdown


def _terminal_family_table(family: str, rows: pd.DataFrame) -> Table:
    baseline = baseline_backend(family) or "none"
    table = Table(
        title=f"{family}  (baseline: {baseline})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),  # with the box's blank separator, two spaces apart
        pad_edge=False,
        show_edge=False,
        caption=f"{MISSING}: the baseline was not timed at this size and dtype",
        caption_justify="left",
    )
    rows = with_variant_label(rows)  # a variant is a group of its own
    formatted = format_table(rows, TERMINAL_COLUMNS)
    for name, header in zip(TERMINAL_COLUMNS, formatted.columns):
        # On a narrow terminal rich shrinks only the columns that may wrap. Only
        # headers longer than every value may wrap, and only between words, so
        # neither a value nor a header word gets cut.
        widest = max((len(value) for value in formatted[header]), default=0)
        longest_word = max(len(word) for word in header.split())
        justify = "left" if name in _TEXT_COLUMNS else "right"
        table.add_column(
            header,
            justify=justify,
            min_width=max(widest, longest_word),
            no_wrap=len(header) <= widest,
        )
    previous = None
    for (_, row), values in zip(rows.iterrows(), formatted.itertuples(index=False)):
        group = (row["n"], row["classes"], row["dtype"])
        values = list(values)
        if group == previous:
            values[:3] = ["", "", ""]  # N, L and dtype are shown once per group
        elif previous is not None:
            table.add_section()
        previous = group
        style = "bold green" if row["time_vs_fastest"] == 1.0 else None
        table.add_row(*values, style=style)
    return table


def terminal_table(summary: pd.DataFrame) -> Group:
    """Build a rich renderable with one table per family, to print on a Console.

    Each size and dtype lists its backends fastest first, with the fastest in
    bold. Cells keep their full width, and from 80 columns up they fit
    without wrapping for the registry's backend names.
    """
    tables = [
        _terminal_family_table(family, summary[summary["family"] == family])
        for family in families(summary)
    ]
    return Group(*tables)


def print_table(summary: pd.DataFrame, console: Console) -> None:
    """Print terminal_table(summary) on `console`."""
    console.print(terminal_table(summary))
