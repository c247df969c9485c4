"""The HTML report of a sweep: one self-contained page with plots, tables and reasons.

Plots are drawn with matplotlib's Agg canvas and embedded as base64 PNG, so
the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
import math
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

import impls
import softgrad
from softgrad import gpu_probe
from softgrad.cases import format_bytes
from softgrad.grid import DTYPES
from softgrad.machine import describe_pool
from softgrad.summary import (
    COLUMN,
    MISSING,
    TABLE_COLUMNS,
    baseline_backend,
    column_legend,
    families,
    format_ratio,
    format_seconds,
    write_atomic,
)

log = logging.getLogger(__name__)

TITLE = "softgrad: softmax and softmax + cross-entropy gradients"

DPI = 144  # pixels per inch of the PNGs; the page shows them at 96 CSS px per inch
_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_NOT_TIMED_GREY = "#cfcfcf"

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: #1d1d1f; background: #fff; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin: 0.6em 0 0.3em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.1em; margin: 1.2em 0 0.4em; }
p, li { max-width: 80em; }
code { font-size: 0.92em; background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
.lead { font-size: 1.05em; }
.note { color: #555; font-size: 0.92em; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
         gap: 12px 20px; align-items: start; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.9em; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.4em 0 1em; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { padding: 3px 8px; text-align: right; vertical-align: top;
         border-bottom: 1px solid #eee; }
th { background: #f6f6f6; position: sticky; top: 0; white-space: nowrap; }
td.text, th.text { text-align: left; }
td.reason { text-align: left; white-space: normal; min-width: 18em; }
tr.group td { border-top: 1px solid #bbb; }
tr.fastest td { font-weight: 600; }
table.facts th { text-align: left; background: none; font-weight: 600;
                 position: static; }
table.facts td { text-align: left; overflow-wrap: anywhere; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px;
            font-size: 0.9em; }
dl.legend dt { font-weight: 600; }
dl.legend dd { margin: 0; }
.nowrap { white-space: nowrap; }
details > summary { cursor: pointer; font-weight: 600; margin: 0.6em 0; }
"""


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _size(n, classes) -> str:
    return f"{int(n)} × {int(classes)}"


def _ordered_dtypes(values: Iterable[str]) -> list[str]:
    present = set(values)
    return [d for d in DTYPES if d in present] + sorted(present - set(DTYPES))


def _sizes(rows: pd.DataFrame) -> list[tuple[int, int]]:
    """List the (N, L) of `rows` from the fewest elements to the most."""
    sizes = {(int(n), int(c)) for n, c in zip(rows["n"], rows["classes"])}
    return sorted(sizes, key=lambda size: (size[0] * size[1], size[0]))


def _not_timed_reason(
    not_timed: pd.DataFrame, family: str, backend: str, n: int, classes: int, dtype
) -> str:
    """Return why a case was not timed, from the skipped and failed cases."""
    if not_timed is not None and len(not_timed):
        match = not_timed[
            (not_timed["family"] == family)
            & (not_timed["backend"] == backend)
            & (not_timed["n"] == n)
            & (not_timed["classes"] == classes)
            & (not_timed["dtype"] == dtype)
        ]
        if len(match):
            row = match.iloc[0]
            return f"{row['status']}: {row['reason']}"
    return "it was not part of this run"


# The opening paragraph.


def _size_clause(
    label: str,
    at: pd.DataFrame,
    family: str,
    baseline: str | None,
    not_timed: pd.DataFrame,
) -> str:
    at = at.sort_values("median_s", kind="stable")
    winner = at.iloc[0]
    n, classes, dtype = int(winner["n"]), int(winner["classes"]), winner["dtype"]
    clause = (
        f"at the {label} size, {_size(n, classes)}, {winner['backend']} is fastest"
        f" at {format_seconds(winner['median_s'])}"
    )
    if len(at) > 1:
        second = at.iloc[1]
        margin = second["median_s"] / winner["median_s"]
        clause += f", {format_ratio(margin)} faster than {second['backend']}"
    if baseline is None or baseline in set(at["backend"].iloc[:2]):
        return clause  # the clause already names the baseline as winner or runner-up
    speedup = winner["speedup_vs_baseline"]
    if math.isfinite(speedup):
        return clause + f" and {format_ratio(speedup)} faster than {baseline}"
    reason = _not_timed_reason(not_timed, family, baseline, n, classes, dtype)
    return clause + f" ({baseline} was not timed there, {reason})"


def headline(summary: pd.DataFrame, not_timed: pd.DataFrame) -> str:
    """Say per family which backend wins at the smallest and largest size, by how much.

    Each family is described in float64 when it was timed in float64, else in
    its first dtype. Returns plain text, not HTML.
    """
    if summary.empty:
        return "No case was timed, so there is nothing to compare."
    sentences = []
    for family in families(summary):
        rows = summary[summary["family"] == family]
        dtype = _ordered_dtypes(rows["dtype"])[0]
        rows = rows[rows["dtype"] == dtype]
        sizes = _sizes(rows)
        labels = [("smallest", sizes[0]), ("largest", sizes[-1])]
        if len(sizes) == 1:
            labels = [("only", sizes[0])]
        baseline = baseline_backend(family)
        clauses = [
            _size_clause(
                label,
                rows[(rows["n"] == n) & (rows["classes"] == classes)],
                family,
                baseline,
                not_timed,
            )
            for label, (n, classes) in labels
        ]
        sentences.append(f"In {family} ({dtype}), " + "; ".join(clauses) + ".")
    return " ".join(sentences)


# Plots.


def _png(figure: Figure) -> tuple[str, int, int]:
    """Render `figure` as PNG; return it as base64 with its width and height in CSS px."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    data = buffer.getvalue()
    width, height = struct.unpack(">II", data[16:24])  # the PNG header's IHDR chunk
    scale = 96 / DPI
    encoded = base64.b64encode(data).decode("ascii")
    return encoded, round(width * scale), round(height * scale)


def _backend_colors(family: str, names: Iterable[str]) -> dict[str, str]:
    """Give each backend of `family` one color, the same in every plot."""
    try:
        order = [backend.name for backend in impls.backends(family)]
    except impls.InputError:
        order = []
    order += sorted(set(names) - set(order))
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(order)}


def _time_tick(seconds: float, _position=None) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale * 0.999 or unit == "ns":
            return f"{seconds / scale:g} {unit}"
    raise AssertionError("unreachable")


def time_plot(rows: pd.DataFrame, family: str, dtype: str) -> Figure:
    """Plot the median time per call against N x L, log-log.

    Each backend has one color and each class count L one marker. A line joins
    a backend's sizes of equal L: joining sizes of different L would zigzag,
    because the Jacobian backends grow with N x L x L, not with N x L.
    """
    figure = Figure(figsize=(6.4, 5.0), layout="constrained")
    axes = figure.add_subplot()
    baseline = baseline_backend(family)
    colors = _backend_colors(family, rows["backend"])
    class_counts = sorted({int(c) for c in rows["classes"]})
    markers = {c: _MARKERS[i % len(_MARKERS)] for i, c in enumerate(class_counts)}
    backend_handles = []
    for backend, color in colors.items():
        timed = rows[rows["backend"] == backend]
        if timed.empty:
            continue
        linestyle = "--" if backend == baseline else "-"
        for classes, line in timed.groupby("classes"):
            line = line.sort_values("n")
            axes.plot(
                line["n"] * line["classes"],
                line["median_s"],
                color=color,
                marker=markers[int(classes)],
                markersize=5,
                linewidth=1.3,
                linestyle=linestyle,
            )
        label = f"{backend} (baseline)" if backend == baseline else backend
        backend_handles.append(
            Line2D([], [], color=color, linestyle=linestyle, label=label)
        )
    marker_handles = [
        Line2D([], [], color="#555555", marker=m, linestyle="", label=f"L = {c}")
        for c, m in markers.items()
    ]
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10))
    axes.yaxis.set_major_formatter(FuncFormatter(_time_tick))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("N × L (elements in each input array)")
    axes.set_ylabel("median time per call")
    axes.set_title(f"{family}, {dtype}", fontsize="medium")
    axes.grid(True, which="major", alpha=0.35)
    figure.legend(
        handles=backend_handles,
        loc="outside lower left",
        ncols=2,
        fontsize="small",
        frameon=False,
    )
    figure.legend(
        handles=marker_handles,
        loc="outside lower right",
        ncols=2,
        fontsize="small",
        frameon=False,
    )
    return figure


def _best_speedups(rows: pd.DataFrame) -> dict[tuple[int, int], tuple[float, str]]:
    """Return, per (N, L), the best speedup over the baseline and the backend."""
    best = {}
    for (n, classes), at in rows.groupby(["n", "classes"]):
        timed = at[np.isfinite(at["speedup_vs_baseline"])]
        if timed.empty:
            best[int(n), int(classes)] = (math.nan, "")
        else:
            top = timed.loc[timed["speedup_vs_baseline"].idxmax()]
            best[int(n), int(classes)] = (top["speedup_vs_baseline"], top["backend"])
    return best


def _text_color(rgba) -> str:
    red, green, blue = rgba[:3]
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "black" if luminance > 0.5 else "white"


def speedup_heatmap(
    rows: pd.DataFrame, family: str, not_timed: pd.DataFrame
) -> tuple[Figure, list[str]]:
    """Draw the best speedup over the baseline on a batch N x classes L grid.

    One panel per dtype. Grey cells were timed but not the baseline, blank
    cells were not in the run. Returns the figure and one note per grey cell.
    """
    baseline = baseline_backend(family) or "the baseline"
    dtypes = _ordered_dtypes(rows["dtype"])
    ns = sorted({int(n) for n in rows["n"]})
    ls = sorted({int(c) for c in rows["classes"]})
    best = {dtype: _best_speedups(rows[rows["dtype"] == dtype]) for dtype in dtypes}
    finite = [
        value
        for cells in best.values()
        for value, _ in cells.values()
        if math.isfinite(value)
    ]
    norm = LogNorm(vmin=1, vmax=max(finite + [10.0]))

    panel_width = max(3.2, 1.15 * len(ls) + 1.0)
    figure = Figure(
        figsize=(panel_width * len(dtypes) + 1.2, 0.36 * len(ns) + 1.6),
        layout="constrained",
    )
    panels = figure.subplots(1, len(dtypes), squeeze=False)[0]
    notes = []
    image = None
    for axes, dtype in zip(panels, dtypes):
        grid = np.full((len(ns), len(ls)), np.nan)
        for (n, classes), (speedup, _) in best[dtype].items():
            grid[ns.index(n), ls.index(classes)] = speedup
        image = axes.imshow(
            np.ma.masked_invalid(grid),
            cmap="viridis",
            norm=norm,
            origin="lower",
            aspect="auto",
        )
        for (n, classes), (speedup, backend) in best[dtype].items():
            row, column = ns.index(n), ls.index(classes)
            if math.isfinite(speedup):
                color = _text_color(image.cmap(norm(speedup)))
                text = f"{format_ratio(speedup)}\n{backend}"
            else:
                axes.add_patch(
                    Rectangle((column - 0.5, row - 0.5), 1, 1, color=_NOT_TIMED_GREY)
                )
                color, text = "#333333", "not timed"
                reason = _not_timed_reason(
                    not_timed, family, baseline, n, classes, dtype
                )
                notes.append(f"{_size(n, classes)}, {dtype}: {reason}")
            axes.text(
                column, row, text, ha="center", va="center", fontsize=8, color=color
            )
        axes.set_xticks(range(len(ls)), labels=[str(c) for c in ls])
        axes.set_yticks(range(len(ns)), labels=[str(n) for n in ns])
        axes.set_xlabel("classes L")
        axes.set_ylabel("batch N")
        axes.set_title(dtype, fontsize="medium")
        axes.tick_params(length=0)
    colorbar = figure.colorbar(image, ax=list(panels), shrink=0.9)
    colorbar.set_label("speedup over the baseline")
    colorbar.formatter = FuncFormatter(lambda value, _: f"{value:g}×")
    colorbar.update_ticks()
    figure.suptitle(f"{family}: best speedup over {baseline}", fontsize="medium")
    return figure, notes


def _image(figure: Figure, alt: str) -> str:
    encoded, width, height = _png(figure)
    return (
        f'<img src="data:image/png;base64,{encoded}" width="{width}"'
        f' height="{height}" alt="{_escape(alt)}">'
    )


# HTML sections.


def _facts_table(facts: Sequence[tuple[str, str]]) -> str:
    rows = "".join(
        f"<tr><th>{_escape(key)}</th><td>{_escape(value)}</td></tr>"
        for key, value in facts
    )
    return f'<div class="scroll"><table class="facts">{rows}</table></div>'


def machine_facts(machine: dict) -> list[tuple[str, str]]:
    """Return (label, value) rows describing a machine from softgrad.machine.probe."""
    memory = machine.get("memory_bytes")
    pools = machine.get("thread_pools") or []
    blas = [describe_pool(p) for p in pools if p.get("user_api") == "blas"]
    openmp = [describe_pool(p) for p in pools if p.get("user_api") == "openmp"]
    numba_threads = machine.get("numba_threads")
    layer = machine.get("numba_threading_layer")
    facts = [
        ("CPU", machine.get("cpu") or "unknown"),
        (
            "cores",
            (
                f"{machine.get('logical_cores')} logical,"
                f" {machine.get('physical_cores')} physical"
            ),
        ),
        ("memory", format_bytes(memory) if memory else "unknown"),
        ("OS", machine.get("os") or "unknown"),
        ("Python", machine.get("python") or "unknown"),
        ("numpy", machine.get("numpy") or "not installed"),
        ("numba", machine.get("numba") or "not installed"),
        ("pandas", machine.get("pandas") or "not installed"),
        ("BLAS", "; ".join(blas) or "none found"),
        ("OpenMP", "; ".join(openmp) or "none loaded"),
        (
            "numba threads",
            MISSING
            if numba_threads is None
            else f"{numba_threads}" + (f" ({layer} threading layer)" if layer else ""),
        ),
    ]
    if any(key.startswith("gpu_") for key in machine):
        facts.append(("GPU", gpu_probe.describe(machine)))
    environment = machine.get("environment") or {}
    facts += [(name, value) for name, value in environment.items() if value]
    return facts


def _pytest_benchmark_facts(info: dict) -> list[tuple[str, str]]:
    cpu = info.get("cpu") or {}
    return [
        ("CPU", cpu.get("brand_raw") or info.get("processor") or "unknown"),
        ("cores", f"{cpu.get('count', '?')} logical"),
        ("OS", f"{info.get('system', '')} {info.get('release', '')}".strip()),
        ("Python", info.get("python_version") or "unknown"),
    ]


def _machine_section(runs: Sequence[dict]) -> str:
    parts = ["<h2>Machine</h2>"]
    seen = set()
    for run in runs:
        machine = run.get("machine")
        if machine:
            facts = machine_facts(machine)
        elif run.get("machine_info"):
            facts = _pytest_benchmark_facts(run["machine_info"])
        else:
            continue
        key = json.dumps(facts)
        if key in seen:
            continue
        seen.add(key)
        if not machine:
            parts.append(
                f'<p class="note">{_escape(run["path"])} has no machine description'
                " of softgrad's, so these fields come from pytest-benchmark and"
                " BLAS and thread counts are unknown.</p>"
            )
        parts.append(_facts_table(facts))
    if not seen:
        parts.append("<p>The results files describe no machine.</p>")
    return "\n".join(parts)


def _run_facts(run: dict) -> list[tuple[str, str]]:
    commit = run.get("commit_info") or {}
    commit_text = MISSING
    if commit.get("id"):
        commit_text = str(commit["id"])[:12] + (
            " (dirty)" if commit.get("dirty") else ""
        )
    limit = run.get("memory_limit")
    budget = run.get("time_budget_s")
    return [
        ("file", run.get("path", MISSING)),
        ("started", run.get("started") or run.get("datetime") or MISSING),
        ("command", run.get("command") or MISSING),
        ("commit", commit_text),
        ("memory limit", format_bytes(limit) if limit else MISSING),
        ("time budget", f"{budget:g} s per call" if budget else MISSING),
        ("interrupted", "yes" if run.get("interrupted") else "no"),
        ("resumed from", ", ".join(run.get("resumed_from") or []) or MISSING),
    ]


def _runs_section(runs: Sequence[dict]) -> str:
    parts = ["<h2>Runs</h2>"]
    parts += [_facts_table(_run_facts(run)) for run in runs]
    return "\n".join(parts)


def _plots_section(summary: pd.DataFrame) -> str:
    parts = ["<h2>Time per call</h2>"]
    for family in families(summary):
        rows = summary[summary["family"] == family]
        parts.append(f"<h3>{_escape(family)}</h3>")
        parts.append('<div class="plots">')
        for dtype in _ordered_dtypes(rows["dtype"]):
            figure = time_plot(rows[rows["dtype"] == dtype], family, dtype)
            alt = f"median time per call of each {family} backend, {dtype}"
            parts.append(f"<figure>{_image(figure, alt)}</figure>")
        parts.append("</div>")
    return "\n".join(parts)


def _heatmaps_section(summary: pd.DataFrame, not_timed: pd.DataFrame) -> str:
    parts = [
        "<h2>Best speedup over the baseline</h2>",
        (
            '<p class="note">Each cell shows the fastest backend at that batch size N'
            " and class count L and its speedup over the family's baseline. Grey"
            " cells: other backends were timed there but not the baseline. Blank"
            " cells: the size was not in the run.</p>"
        ),
    ]
    for family in families(summary):
        rows = summary[summary["family"] == family]
        figure, notes = speedup_heatmap(rows, family, not_timed)
        alt = f"best speedup over the baseline of {family} by batch and classes"
        parts.append(f"<figure>{_image(figure, alt)}")
        if notes:
            baseline = baseline_backend(family) or "the baseline"
            items = "".join(f"<li>{_escape(note)}</li>" for note in notes)
            parts.append(
                f"<figcaption>Grey cells, where {_escape(baseline)} was not timed:"
                f"<ul>{items}</ul></figcaption>"
            )
        parts.append("</figure>")
    return "\n".join(parts)


def _summary_table(rows: pd.DataFrame) -> str:
    columns = [COLUMN[name] for name in TABLE_COLUMNS]
    text = {"dtype", "backend", "baseline"}
    head = "".join(
        f'<th class="{"text" if c.name in text else "number"}"'
        f' title="{_escape(c.description)}">{_escape(c.header)}</th>'
        for c in columns
    )
    body = []
    previous = None
    for _, row in rows.iterrows():
        group = (row["n"], row["classes"], row["dtype"])
        classes = []
        if previous is not None and group != previous:
            classes.append("group")
        if row["time_vs_fastest"] == 1.0:
            classes.append("fastest")
        previous = group
        cells = "".join(
            f'<td class="{"text" if c.name in text else "number"}">'
            f"{_escape(c.format(row[c.name]))}</td>"
            for c in columns
        )
        body.append(f'<tr class="{" ".join(classes)}">{cells}</tr>')
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _tables_section(summary: pd.DataFrame) -> str:
    parts = [
        "<h2>Tables</h2>",
        (
            '<p class="note">Rows are grouped by size and dtype, fastest first.'
            " The fastest is in bold.</p>"
        ),
    ]
    for family in families(summary):
        rows = summary[summary["family"] == family]
        baseline = baseline_backend(family)
        title = family + (f" (baseline: {baseline})" if baseline else "")
        parts.append(
            f"<details open><summary>{_escape(title)}, {len(rows)} rows</summary>"
            f"{_summary_table(rows)}</details>"
        )
    legend = "".join(
        f"<dt>{_escape(header)}</dt><dd>{_escape(text)}</dd>"
        for header, text in column_legend(TABLE_COLUMNS)
    )
    parts.append(f'<dl class="legend">{legend}</dl>')
    return "\n".join(parts)


def _sort_cases(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort cases by family (registry order), size, dtype, then backend name."""
    families = list(impls.FAMILIES)
    ranked = frame.assign(
        _family=[
            families.index(f) if f in families else len(families)
            for f in frame["family"]
        ],
        _elements=frame["n"] * frame["classes"],
        _dtype=[
            DTYPES.index(d) if d in DTYPES else len(DTYPES) for d in frame["dtype"]
        ],
    )
    order = ["_family", "family", "_elements", "n", "_dtype", "dtype", "backend"]
    return ranked.sort_values(order, kind="stable")


def _not_timed_section(not_timed: pd.DataFrame) -> str:
    parts = ["<h2>Skipped and failed cases</h2>"]
    if not_timed is None or not len(not_timed):
        parts.append("<p>Every case of the run was timed.</p>")
        return "\n".join(parts)
    headers = ("family", "backend", "N", "L", "dtype", "status", "reason")
    head = "".join(f'<th class="text">{h}</th>' for h in headers)
    body = []
    for _, row in _sort_cases(not_timed).iterrows():
        cells = [row["family"], row["backend"], row["n"], row["classes"], row["dtype"]]
        cells = "".join(f'<td class="text">{_escape(value)}</td>' for value in cells)
        cells += f'<td class="text">{_escape(row["status"])}</td>'
        cells += f'<td class="reason">{_escape(row["reason"])}</td>'
        body.append(f"<tr>{cells}</tr>")
    parts.append(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    return "\n".join(parts)


def _introduction(summary, not_timed, runs) -> str:
    skipped = int((not_timed["status"] == "skipped").sum()) if len(not_timed) else 0
    failed = int((not_timed["status"] == "failed").sum()) if len(not_timed) else 0
    cpu = next((run["machine"].get("cpu") for run in runs if run.get("machine")), None)
    where = f" on {cpu}" if cpu else ""
    count = (
        f"This run timed {len(summary)} cases of {summary['family'].nunique()}"
        f" families{where}; {skipped} cases were skipped and {failed} failed,"
        " each listed with its reason at the end."
    )
    return (
        f'<p class="lead">{_escape(count)} {_escape(headline(summary, not_timed))}</p>'
    )


def render_report(
    summary: pd.DataFrame, not_timed: pd.DataFrame, runs: Sequence[dict]
) -> str:
    """Return the report as one HTML page that needs no other file."""
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    sections = [
        f"<h1>{_escape(TITLE)}</h1>",
        _introduction(summary, not_timed, runs),
        (
            '<p class="note">Each time is the median over the rounds'
            " pytest-benchmark ran (the rounds column), and the IQR shows the"
            " spread. On a shared machine a round stalls whenever another process"
            " takes a core, which the median leaves out. numba compile time is"
            " measured on its own and is not in any median. Written"
            f' <span class="nowrap">{created} UTC</span> by softgrad'
            f" {softgrad.__version__}.</p>"
        ),
        _machine_section(runs),
        _runs_section(runs),
    ]
    if not summary.empty:
        sections += [
            _plots_section(summary),
            _heatmaps_section(summary, not_timed),
            _tables_section(summary),
        ]
    sections.append(_not_timed_section(not_timed))
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(TITLE)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_report(
    summary: pd.DataFrame,
    not_timed: pd.DataFrame,
    runs: Sequence[dict],
    path: str | os.PathLike,
) -> Path:
    """Write the HTML report to `path` atomically and return the path.

    `summary` comes from softgrad.summary.summarize, `not_timed` and `runs`
    from softgrad.summary.load_results.
    """
    path = write_atomic(path, render_report(summary, not_timed, runs))
    log.info("wrote %s", path)
    return path
