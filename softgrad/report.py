"""The HTML report of a sweep: one self-contained page with plots, tables and reasons.

Plots are drawn with matplotlib's Agg canvas and embedded as base64 PNG, so
the page needs no other file and no network.
"""

from __future__ import annotations

import datetime
import html
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import impls
import softgrad
from softgrad import gpu_probe
from softgrad.answers import answers
from softgrad.cases import format_bytes
from softgrad.grid import DTYPES, Size
from softgrad.machine import describe_pool, machine_bandwidth, machine_label
from softgrad.plots import (
    _ordered_dtypes,
    _png,
    bandwidth_plot,
    compile_plot,
    machines_plot,
    memory_plot,
    speedup_heatmap,
    time_plot,
)
from softgrad.scaling import (
    CROSSOVER_COLUMNS,
    ELEMENTS,
    crossovers,
    leading_crossovers,
    scaling_table,
)
from softgrad.summary import (
    COLUMN,
    MISSING,
    TABLE_COLUMNS,
    baseline_backend,
    column_legend,
    families,
    with_variant_label,
    write_atomic,
)

log = logging.getLogger(__name__)

CROSSOVER_COLUMN = {column.name: column for column in CROSSOVER_COLUMNS}
_CASE_COLUMNS = ["family", "backend", "n", "classes", "dtype"]

TITLE = "softgrad: softmax and softmax + cross-entropy gradients"

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
table { border-collapse: collapse; font-size: 0.86em; }
th, td { padding: 3px 7px; text-align: right; vertical-align: bottom;
         border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f6f6f6; position: sticky; top: 0; white-space: normal;
     min-width: 3em; }
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
nav.toc { border: 1px solid #ddd; border-radius: 6px; padding: 6px 16px;
          margin: 1em 0 0.5em; background: #fafafa; }
nav.toc > p { margin: 0.2em 0; font-weight: 600; }
nav.toc ol { columns: 3 16em; column-gap: 24px; margin: 0.2em 0; padding-left: 1.4em; }
nav.toc li { break-inside: avoid; }
nav.toc ul { margin: 0; padding-left: 1.1em; font-size: 0.92em; }
ul.answers li { margin: 0.35em 0; }
p.machine { font-weight: 600; margin-bottom: 0.2em; }
@media (max-width: 1100px) {
  body { font-size: 14px; }
  main { padding: 12px 14px 40px; }
  th, td { padding: 3px 5px; }
}
"""


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _image(figure: Figure, alt: str) -> str:
    encoded, width, height = _png(figure)
    return (
        f'<img src="data:image/png;base64,{encoded}" width="{width}"'
        f' height="{height}" alt="{_escape(alt)}">'
    )


# HTML pieces.


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


def _summary_table(rows: pd.DataFrame) -> str:
    rows = with_variant_label(rows)
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
    parts = [_heading(2, "Skipped and failed cases", "skipped")]
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


# Grouping by machine.


@dataclass
class MachineRuns:
    """The summary rows, cases not timed and runs of one machine."""

    label: str | None  # None when the report covers one machine
    summary: pd.DataFrame
    not_timed: pd.DataFrame
    runs: list[dict]

    @property
    def bandwidth(self) -> float | None:
        """The measured bandwidth in GB/s, from the latest run that has one."""
        measured = [machine_bandwidth(run) for run in self.runs]
        return next((value for value in reversed(measured) if value), None)

    def title(self, text: str) -> str:
        return text if self.label is None else f"{text}\n{self.label}"


def machine_groups(
    summary: pd.DataFrame, not_timed: pd.DataFrame, runs: Sequence[dict]
) -> list[MachineRuns]:
    """Split the report's data by the `machine` column, if it has one.

    softgrad.summary.summarize_machines adds the column when the runs come
    from more than one machine; without it, all rows belong to one machine.
    """
    if "machine" not in summary.columns or summary["machine"].nunique() < 2:
        return [MachineRuns(None, summary, not_timed, list(runs))]
    groups = []
    for label in dict.fromkeys(summary["machine"]):
        skipped = not_timed
        if "machine" in not_timed.columns:
            skipped = not_timed[not_timed["machine"] == label]
        groups.append(
            MachineRuns(
                label,
                summary[summary["machine"] == label],
                skipped,
                [run for run in runs if machine_label(run) == label],
            )
        )
    return groups


def _heading(level: int, text: str, anchor: str | None = None) -> str:
    identifier = f' id="{anchor}"' if anchor else ""
    return f"<h{level}{identifier}>{_escape(text)}</h{level}>"


def _family_anchor(section: str, family: str) -> str:
    return f"{section}-{family.replace('_', '-')}"


# The opening answer and the table of contents.


def _answer_section(groups: Sequence[MachineRuns]) -> str:
    parts = [_heading(2, "Answer", "answer")]
    if all(group.summary.empty for group in groups):
        parts.append("<p>No case was timed, so there is nothing to compare.</p>")
        return "\n".join(parts)
    for group in groups:
        if group.label is not None:
            parts.append(f'<p class="machine">On {_escape(group.label)}:</p>')
        items = "".join(
            f"<li><strong>{_escape(subject)}:</strong>{_escape(rest)}</li>"
            for subject, rest in (
                sentence.split(":", 1) for sentence in answers(group.summary)
            )
        )
        parts.append(f'<ul class="answers">{items}</ul>')
    return "\n".join(parts)


def _introduction(groups: Sequence[MachineRuns]) -> str:
    summary = pd.concat([group.summary for group in groups])
    not_timed = pd.concat([group.not_timed for group in groups])
    skipped = int((not_timed["status"] == "skipped").sum()) if len(not_timed) else 0
    failed = int((not_timed["status"] == "failed").sum()) if len(not_timed) else 0
    if len(groups) > 1:
        where = f" on {len(groups)} machines"
    else:
        cpus = [
            run["machine"].get("cpu") for run in groups[0].runs if run.get("machine")
        ]
        where = f" on {cpus[0]}" if cpus and cpus[0] else ""
    count = (
        f"The runs timed {len(summary)} cases of {summary['family'].nunique()}"
        f" families{where}. {skipped} cases were skipped and {failed} failed, each"
        " listed with its reason at the end."
    )
    return f'<p class="lead">{_escape(count)}</p>'


def _contents(sections: Sequence[tuple[str, str, list[tuple[str, str]]]]) -> str:
    """Build the table of contents from (anchor, title, [(anchor, title)]) entries."""
    items = []
    for anchor, title, children in sections:
        nested = ""
        if children:
            links = "".join(
                f'<li><a href="#{child}">{_escape(text)}</a></li>'
                for child, text in children
            )
            nested = f"<ul>{links}</ul>"
        items.append(f'<li><a href="#{anchor}">{_escape(title)}</a>{nested}</li>')
    return (
        '<nav class="toc" aria-label="Contents"><p>Contents</p>'
        f"<ol>{''.join(items)}</ol></nav>"
    )


# Plot sections.


def _plots_section(groups: Sequence[MachineRuns]) -> str:
    parts = [_heading(2, "Time per call", "time")]
    parts.append(
        '<p class="note">Median time per call against the elements of each input'
        " array, log-log. The bars and bands span the first to the third"
        " quartile of the rounds.</p>"
    )
    for family in _families(groups):
        parts.append(_heading(3, family, _family_anchor("time", family)))
        parts.append('<div class="plots">')
        # Machines side by side: each dtype's plots of all machines in a row.
        for dtype, group in _by_dtype(groups, family):
            rows = group.summary[group.summary["family"] == family]
            title = group.title(f"{family}, {dtype}")
            figure = time_plot(rows[rows["dtype"] == dtype], family, dtype, title)
            alt = f"median time per call of each {family} backend, {dtype}"
            parts.append(f"<figure>{_image(figure, alt)}</figure>")
        parts.append("</div>")
    return "\n".join(parts)


def _heatmaps_section(groups: Sequence[MachineRuns]) -> str:
    parts = [
        _heading(2, "Best speedup over the baseline", "speedup"),
        (
            '<p class="note">Each cell shows the fastest backend at that batch size N'
            " and class count L and its speedup over the family's baseline. Grey"
            " cells: other backends were timed there but not the baseline. Blank"
            " cells: the size was not in the run.</p>"
        ),
    ]
    for family in _families(groups):
        for group in groups:
            rows = group.summary[group.summary["family"] == family]
            if rows.empty:
                continue
            baseline = baseline_backend(family) or "the baseline"
            title = group.title(f"{family}: best speedup over {baseline}")
            figure, notes = speedup_heatmap(rows, family, group.not_timed, title)
            alt = f"best speedup over the baseline of {family} by batch and classes"
            parts.append(f"<figure>{_image(figure, alt)}")
            if notes:
                items = "".join(f"<li>{_escape(note)}</li>" for note in notes)
                parts.append(
                    f"<figcaption>Grey cells, where {_escape(baseline)} was not"
                    f" timed:<ul>{items}</ul></figcaption>"
                )
            parts.append("</figure>")
    return "\n".join(parts)


def _slope_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return MISSING
    if len(rows) == 1:
        row = rows.iloc[0]
        error = row["slope_se"]
        spread = f" ± {error:.2f}" if math.isfinite(error) else ""
        return f"{row['slope']:.2f}{spread}"
    slopes = rows["slope"]
    return f"{slopes.median():.2f} ({slopes.min():.2f} to {slopes.max():.2f})"


def _slopes_table(slopes: pd.DataFrame, family: str) -> str:
    """Build one row per backend: its slope against N × L, L at each N, and N."""
    lines = [(ELEMENTS, "")]
    lines += [
        ("L", fixed)
        for fixed in dict.fromkeys(slopes.loc[slopes["against"] == "L", "fixed"])
    ]
    headers = ["backend", "N × L"] + [f"L at {fixed}" for _, fixed in lines[1:]]
    has_n = (slopes["against"] == "N").any()
    if has_n:
        headers.append("N at fixed L: median (range)")
    head = "".join(
        f'<th class="{"text" if i == 0 else "number"}">{_escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = []
    order = [b.name for b in impls.backends(family)] if family in impls.FAMILIES else []
    backends = sorted(
        dict.fromkeys(slopes["backend"]),
        key=lambda name: order.index(name) if name in order else len(order),
    )
    for backend in backends:
        mine = slopes[slopes["backend"] == backend]
        cells = [f'<td class="text">{_escape(backend)}</td>']
        for against, fixed in lines:
            match = mine[(mine["against"] == against) & (mine["fixed"] == fixed)]
            cells.append(f'<td class="number">{_escape(_slope_cell(match))}</td>')
        if has_n:
            match = mine[mine["against"] == "N"]
            cells.append(f'<td class="number">{_escape(_slope_cell(match))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _crossovers_table(crossings: pd.DataFrame) -> str:
    names = ["dtype", "along", "fixed", "faster_below", "faster_above", "at"]
    names += ["margin_below", "margin_above"]
    columns = [CROSSOVER_COLUMN[name] for name in names]
    text = {"dtype", "along", "fixed", "faster_below", "faster_above"}
    head = "".join(
        f'<th class="{"text" if c.name in text else "number"}"'
        f' title="{_escape(c.description)}">{_escape(c.header)}</th>'
        for c in columns
    )
    body = []
    for _, row in crossings.iterrows():
        cells = "".join(
            f'<td class="{"text" if c.name in text else "number"}">'
            f"{_escape(c.format(row[c.name]))}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _scaling_section(groups: Sequence[MachineRuns]) -> str:
    parts = [
        _heading(2, "Scaling and crossovers", "scaling"),
        (
            '<p class="note">Slopes of log(median time) against log(size), fitted by'
            " least squares, in the first dtype of each family: 1 means time grows"
            " in proportion to size, 2 with its square, and near 0 the time is"
            " mostly call overhead. ± is the slope's standard error, left out where"
            " two sizes fit exactly. Crossovers are where a backend that is fastest"
            " somewhere overtakes another, interpolated between neighboring sizes"
            " on log-log axes. scaling.csv and crossovers.csv have every fit and"
            " crossing in every dtype.</p>"
        ),
    ]
    for family in _families(groups):
        parts.append(_heading(3, family, _family_anchor("scaling", family)))
        for group in groups:
            rows = group.summary[group.summary["family"] == family]
            if rows.empty:
                continue
            if group.label is not None:
                parts.append(f'<p class="machine">{_escape(group.label)}</p>')
            dtype = _ordered_dtypes(rows["dtype"])[0]
            slopes = scaling_table(rows[rows["dtype"] == dtype])
            if slopes.empty:
                parts.append(
                    f"<p>No backend was timed at two sizes in {_escape(dtype)}, so"
                    " there is no slope to fit.</p>"
                )
            else:
                parts.append(f"<p>Slopes, {_escape(dtype)}:</p>")
                parts.append(_slopes_table(slopes, family))
            crossings = leading_crossovers(rows, crossovers(rows))
            if crossings.empty:
                parts.append(
                    "<p>No backend that is fastest somewhere swaps places with"
                    " another between neighboring sizes.</p>"
                )
            else:
                parts.append("<p>Crossovers:</p>")
                parts.append(_crossovers_table(crossings))
    return "\n".join(parts)


def _bandwidth_section(groups: Sequence[MachineRuns]) -> str:
    parts = [_heading(2, "Share of memory bandwidth", "bandwidth")]
    measured = [group for group in groups if group.bandwidth]
    if not measured:
        parts.append(
            '<p class="note">The runs record no measured memory bandwidth (a'
            " `bandwidth` entry with `triad_gb_per_s` in the machine description),"
            " so this plot is left out. The tables still give each backend's"
            " effective GB/s.</p>"
        )
        return "\n".join(parts)
    parts.append(
        '<p class="note">Effective GB/s, the bytes a call must read and write'
        " divided by its median time, as a share of the machine's measured"
        " triad bandwidth. Inputs that fit the cache can pass 100%.</p>"
    )
    for group in groups:
        if not group.bandwidth:
            parts.append(
                f'<p class="note">{_escape(group.label)} has no measured bandwidth,'
                " so it has no plot here.</p>"
            )
    for family in _families(groups):
        parts.append(_heading(3, family, _family_anchor("bandwidth", family)))
        parts.append('<div class="plots">')
        for dtype, group in _by_dtype(measured, family):
            rows = group.summary[group.summary["family"] == family]
            title = group.title(f"{family}, {dtype}")
            figure = bandwidth_plot(
                rows[rows["dtype"] == dtype], family, dtype, group.bandwidth, title
            )
            alt = f"share of memory bandwidth of each {family} backend, {dtype}"
            parts.append(f"<figure>{_image(figure, alt)}</figure>")
        parts.append("</div>")
    return "\n".join(parts)


def _machines_section(groups: Sequence[MachineRuns]) -> str:
    parts = [
        _heading(2, "Machines compared", "machines"),
        (
            '<p class="note">The fastest backend at each size on each machine: its'
            " time, and its effective GB/s as a share of that machine's own"
            " measured bandwidth, so that machines with different memory compare"
            " fairly.</p>"
        ),
    ]
    summary = pd.concat([group.summary for group in groups])
    bandwidths = {group.label: group.bandwidth for group in groups}
    for family in _families(groups):
        rows = summary[summary["family"] == family]
        dtype = _ordered_dtypes(rows["dtype"])[0]
        figure = machines_plot(rows[rows["dtype"] == dtype], family, dtype, bandwidths)
        alt = f"fastest {family} backend on each machine, raw and normalized"
        parts.append(f"<figure>{_image(figure, alt)}</figure>")
    return "\n".join(parts)


def _memory_section(groups: Sequence[MachineRuns]) -> str:
    parts = [
        _heading(2, "Memory per call", "memory"),
        (
            '<p class="note">Estimated bytes one call needs, its two inputs'
            " included, from the memory model in the registry of each backend"
            " timed in the run, at every size of the run in the first dtype. This is the estimate the run"
            " compares with its memory limit before it runs a case; cases above"
            " the line were skipped.</p>"
        ),
    ]
    limits = [run.get("memory_limit") for group in groups for run in group.runs]
    limit = min((value for value in limits if value), default=None)
    parts.append('<div class="plots">')
    for family in _families(groups):
        cases = pd.concat(
            [group.summary[_CASE_COLUMNS] for group in groups]
            + [
                group.not_timed[_CASE_COLUMNS]
                for group in groups
                if len(group.not_timed)
            ]
        )
        cases = cases[cases["family"] == family]
        known = {backend.name for backend in impls.backends(family)}
        # Backends timed somewhere: an unavailable one (no GPU here) would only
        # add lines that no timing backs.
        timed = set(pd.concat([group.summary for group in groups])["backend"])
        backends = [
            name
            for name in dict.fromkeys(cases["backend"])
            if name in known and name in timed
        ]
        if not backends:
            continue
        dtype = _ordered_dtypes(cases["dtype"])[0]
        sizes = sorted(
            {Size(int(n), int(c)) for n, c in zip(cases["n"], cases["classes"])}
        )
        figure = memory_plot(family, backends, sizes, dtype, limit)
        alt = f"estimated memory per call of each {family} backend"
        parts.append(f"<figure>{_image(figure, alt)}</figure>")
    parts.append("</div>")
    return "\n".join(parts)


def _compile_section(groups: Sequence[MachineRuns]) -> str:
    parts = [
        _heading(2, "Compile times", "compile"),
        (
            '<p class="note">numba compiles a kernel on its first call for each'
            " dtype. The run makes that call on a one-row input before timing, so"
            " compile time is in no median. Each bar is the longest first call of"
            " a backend and dtype over the run's sizes, because later sizes reuse"
            " the compiled kernel. The kernels are cached on disk, so a bar of a"
            " few milliseconds is a kernel loaded from the cache, not"
            " compiled.</p>"
        ),
    ]
    frames = []
    for group in groups:
        compiled = group.summary[np.isfinite(group.summary["compile_s"])]
        if compiled.empty:
            continue
        longest = compiled.groupby(["family", "backend", "dtype"], sort=False)[
            "compile_s"
        ].max()
        prefix = "" if group.label is None else f"{group.label}: "
        frames.append(
            pd.DataFrame(
                {
                    "label": [
                        f"{prefix}{family}/{backend} {dtype}"
                        for family, backend, dtype in longest.index
                    ],
                    "compile_s": longest.to_numpy(),
                }
            )
        )
    if not frames:
        parts.append("<p>No compiled backend was timed in these runs.</p>")
        return "\n".join(parts)
    figure = compile_plot(pd.concat(frames, ignore_index=True))
    parts.append(f"<figure>{_image(figure, 'numba compile time per backend')}</figure>")
    return "\n".join(parts)


# Tables and facts.


def _tables_section(groups: Sequence[MachineRuns]) -> str:
    parts = [
        _heading(2, "Tables", "tables"),
        (
            '<p class="note">Rows are grouped by size and dtype, fastest first.'
            " The fastest is in bold.</p>"
        ),
    ]
    for group in groups:
        if group.label is not None:
            parts.append(_heading(3, group.label))
        for family in families(group.summary):
            rows = group.summary[group.summary["family"] == family]
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


def _machine_facts_of(run: dict) -> list[tuple[str, str]] | None:
    if run.get("machine"):
        return machine_facts(run["machine"])
    if run.get("machine_info"):
        return _pytest_benchmark_facts(run["machine_info"])
    return None


def _side_by_side(columns: Sequence[tuple[str, list[tuple[str, str]]]]) -> str:
    """Build one table with a column per machine and a row per fact."""
    labels = list(dict.fromkeys(key for _, facts in columns for key, _ in facts))
    head = "<th></th>" + "".join(
        f'<th class="text">{_escape(title)}</th>' for title, _ in columns
    )
    body = []
    for label in labels:
        cells = "".join(
            f"<td>{_escape(dict(facts).get(label, MISSING))}</td>"
            for _, facts in columns
        )
        body.append(f"<tr><th>{_escape(label)}</th>{cells}</tr>")
    return (
        f'<div class="scroll"><table class="facts"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _machine_section(groups: Sequence[MachineRuns]) -> str:
    title = "Machine" if len(groups) == 1 else "Machines"
    parts = [_heading(2, title, "machine")]
    columns = []
    for group in groups:
        for run in reversed(group.runs):  # the latest run describes the machine
            facts = _machine_facts_of(run)
            if facts is None:
                continue
            if not run.get("machine"):
                parts.append(
                    f'<p class="note">{_escape(run["path"])} has no machine'
                    " description of softgrad's, so these fields come from"
                    " pytest-benchmark and BLAS and thread counts are unknown.</p>"
                )
            bandwidth = group.bandwidth
            facts = facts + [
                (
                    "bandwidth",
                    f"{bandwidth:.3g} GB/s (triad)" if bandwidth else "not measured",
                )
            ]
            columns.append((group.label or machine_label(run), facts))
            break
    if not columns:
        parts.append("<p>The results files describe no machine.</p>")
    elif len(columns) == 1:
        parts.append(_facts_table(columns[0][1]))
    else:
        parts.append(_side_by_side(columns))
    return "\n".join(parts)


def _runs_section(groups: Sequence[MachineRuns]) -> str:
    parts = [_heading(2, "Runs", "runs")]
    for group in groups:
        for run in group.runs:
            facts = _run_facts(run)
            if group.label is not None:
                facts = [("machine", group.label)] + facts
            parts.append(_facts_table(facts))
    return "\n".join(parts)


def _by_dtype(
    groups: Sequence[MachineRuns], family: str
) -> list[tuple[str, MachineRuns]]:
    """List (dtype, machine) pairs of `family`, dtype first: machines side by side."""
    summary = pd.concat([group.summary for group in groups])
    dtypes = _ordered_dtypes(summary.loc[summary["family"] == family, "dtype"])
    return [
        (dtype, group)
        for dtype in dtypes
        for group in groups
        if (
            (group.summary["family"] == family) & (group.summary["dtype"] == dtype)
        ).any()
    ]


def _families(groups: Sequence[MachineRuns]) -> list[str]:
    return families(pd.concat([group.summary for group in groups]))


def render_report(
    summary: pd.DataFrame,
    not_timed: pd.DataFrame,
    runs: Sequence[dict],
    training: dict | None = None,
) -> str:
    """Return the report as one HTML page that needs no other file.

    `training` is a train.json document of `softgrad train`; when given, the
    page gains its section.

    With a `machine` column in `summary` (softgrad.summary.summarize_machines),
    each machine gets its own plots and tables, side by side where they fit.
    """
    groups = machine_groups(summary, not_timed, runs)
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    timed = not summary.empty
    listed = []  # (anchor, title, children) for the table of contents
    body = []

    def add(html_text: str, anchor: str, title: str, children=()) -> None:
        body.append(html_text)
        listed.append((anchor, title, list(children)))

    add(_answer_section(groups), "answer", "Answer")
    if timed:
        time_children = [
            (_family_anchor("time", family), family) for family in _families(groups)
        ]
        add(_plots_section(groups), "time", "Time per call", time_children)
        add(_heatmaps_section(groups), "speedup", "Best speedup over the baseline")
        add(_scaling_section(groups), "scaling", "Scaling and crossovers")
        add(_bandwidth_section(groups), "bandwidth", "Share of memory bandwidth")
        if len(groups) > 1:
            add(_machines_section(groups), "machines", "Machines compared")
        add(_memory_section(groups), "memory", "Memory per call")
        add(_compile_section(groups), "compile", "Compile times")
        add(_tables_section(groups), "tables", "Tables")
    if training is not None:
        from softgrad.train import train_section_html

        # The fragment brings its own <section id="training"> and heading.
        add(train_section_html(training), "training", "Training on digits")
    machine_title = "Machine" if len(groups) == 1 else "Machines"
    add(_machine_section(groups), "machine", machine_title)
    add(_runs_section(groups), "runs", "Runs")
    add(_not_timed_section(not_timed), "skipped", "Skipped and failed cases")

    head = [
        f"<h1>{_escape(TITLE)}</h1>",
        body[0],
        _introduction(groups) if timed else "",
        (
            '<p class="note">Each time is the median over the rounds'
            " pytest-benchmark ran (the rounds column), and the IQR shows the"
            " spread. On a shared machine a round stalls whenever another process"
            " takes a core, which the median leaves out. numba compile time is"
            " measured on its own and is not in any median. Written"
            f' <span class="nowrap">{created} UTC</span> by softgrad'
            f" {softgrad.__version__}.</p>"
        ),
        _contents(listed),
    ]
    page = "\n".join(head + body[1:])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(TITLE)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{page}\n</main>\n</body>\n</html>\n"
    )


def write_report(
    summary: pd.DataFrame,
    not_timed: pd.DataFrame,
    runs: Sequence[dict],
    path: str | os.PathLike,
    training: dict | None = None,
) -> Path:
    """Write the HTML report to `path` atomically and return the path.

    `summary` comes from softgrad.summary.summarize, `not_timed` and `runs`
    from softgrad.summary.load_results, `training` from softgrad.train.
    """
    page = render_report(summary, not_timed, runs, training)
    path = write_atomic(path, page)
    log.info("wrote %s", path)
    return path
