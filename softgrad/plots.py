"""The report's figures: time, speedup, bandwidth share, memory and compile time.

Each function returns a matplotlib Figure drawn without pyplot, so figures
can be made in any thread and rendered to PNG by softgrad.report.
"""

from __future__ import annotations

import base64
import io
import math
import struct
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

import impls
from softgrad.cases import Case, format_bytes, memory_need
from softgrad.grid import DTYPES, Size
from softgrad.summary import baseline_backend, format_ratio

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


def _png(figure: Figure) -> tuple[str, int, int]:
    """Render `figure` as PNG: base64 text, then width and height in CSS pixels."""
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


def time_plot(
    rows: pd.DataFrame, family: str, dtype: str, title: str | None = None
) -> Figure:
    """Plot the median time per call against N x L, log-log, with the IQR.

    Each backend has one color and each class count L one marker. A line joins
    a backend's sizes of equal L: joining sizes of different L would zigzag,
    because the Jacobian backends grow with N x L x L, not with N x L. A bar
    at each point, and a band along each line, span the first to the third
    quartile when `rows` has the summary's q1_s and q3_s.
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
            elements = line["n"] * line["classes"]
            axes.plot(
                elements,
                line["median_s"],
                color=color,
                marker=markers[int(classes)],
                markersize=5,
                linewidth=1.3,
                linestyle=linestyle,
            )
            if "q1_s" in line and "q3_s" in line:
                axes.vlines(
                    elements,
                    line["q1_s"],
                    line["q3_s"],
                    color=color,
                    linewidth=2.5,
                    alpha=0.45,
                )
                if len(line) > 1:
                    axes.fill_between(
                        elements,
                        line["q1_s"],
                        line["q3_s"],
                        color=color,
                        alpha=0.12,
                        linewidth=0,
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
    axes.set_ylabel("median time per call (bars: IQR)")
    axes.set_title(title or f"{family}, {dtype}", fontsize="medium")
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
    rows: pd.DataFrame, family: str, not_timed: pd.DataFrame, title: str | None = None
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
    figure.suptitle(
        title or f"{family}: best speedup over {baseline}", fontsize="medium"
    )
    return figure, notes


def _percent_tick(share: float, _position=None) -> str:
    return f"{100 * share:g}%"


def _log_axes(axes, xlabel: str, ylabel: str, title: str) -> None:
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize="medium")
    axes.grid(True, which="major", alpha=0.35)


def _legend_below(figure: Figure, handles: list, columns: int = 2) -> None:
    figure.legend(
        handles=handles,
        loc="outside lower left",
        ncols=columns,
        fontsize="small",
        frameon=False,
    )


def bandwidth_plot(
    rows: pd.DataFrame, family: str, dtype: str, bandwidth_gb_per_s: float, title: str
) -> Figure:
    """Plot each backend's effective GB/s as a share of the measured bandwidth.

    The effective GB/s counts the bytes a call must move at least
    (softgrad.grid.bytes_moved), so a share near 100% means the backend runs
    at the speed of memory. Arrays that fit the cache can pass 100%.
    """
    figure = Figure(figsize=(6.4, 4.6), layout="constrained")
    axes = figure.add_subplot()
    baseline = baseline_backend(family)
    handles = []
    for backend, color in _backend_colors(family, rows["backend"]).items():
        timed = rows[rows["backend"] == backend].copy()
        if timed.empty:
            continue
        timed["elements"] = timed["n"] * timed["classes"]
        timed = timed.sort_values(["elements", "n"])
        linestyle = "--" if backend == baseline else "-"
        axes.plot(
            timed["elements"],
            timed["gb_per_s"] / bandwidth_gb_per_s,
            color=color,
            marker="o",
            markersize=4,
            linewidth=1.2,
            linestyle=linestyle,
        )
        handles.append(Line2D([], [], color=color, linestyle=linestyle, label=backend))
    axes.axhline(1.0, color="#333333", linewidth=1, linestyle=":")
    _log_axes(
        axes,
        "N × L (elements in each input array)",
        f"share of {bandwidth_gb_per_s:.3g} GB/s",
        title,
    )
    axes.yaxis.set_major_formatter(FuncFormatter(_percent_tick))
    _legend_below(figure, handles)
    return figure


def machines_plot(
    rows: pd.DataFrame, family: str, dtype: str, bandwidths: dict[str, float | None]
) -> Figure:
    """Compare machines on the fastest backend at each size, raw and normalized.

    Left: the fastest median time per call on each machine. Right: the same
    call's effective GB/s as a share of that machine's measured bandwidth,
    so that a laptop and a server compare on how well they use their memory.
    A machine without a measured bandwidth has no line on the right.
    """
    figure = Figure(figsize=(10.5, 4.4), layout="constrained")
    time_axes, share_axes = figure.subplots(1, 2)
    handles = []
    machines = list(dict.fromkeys(rows["machine"]))
    for index, machine in enumerate(machines):
        color = _COLORS[index % len(_COLORS)]
        fastest = rows[(rows["machine"] == machine) & (rows["time_vs_fastest"] == 1.0)]
        fastest = fastest.assign(elements=fastest["n"] * fastest["classes"])
        fastest = fastest.sort_values(["elements", "n"])
        time_axes.plot(
            fastest["elements"],
            fastest["median_s"],
            color=color,
            marker="o",
            markersize=4,
        )
        bandwidth = bandwidths.get(machine)
        if bandwidth:
            share_axes.plot(
                fastest["elements"],
                fastest["gb_per_s"] / bandwidth,
                color=color,
                marker="o",
                markersize=4,
            )
        label = machine if bandwidth else f"{machine} (no bandwidth measured)"
        handles.append(Line2D([], [], color=color, marker="o", label=label))
    elements = "N × L (elements in each input array)"
    _log_axes(time_axes, elements, "fastest median time per call", "time")
    time_axes.yaxis.set_major_formatter(FuncFormatter(_time_tick))
    time_axes.yaxis.set_minor_formatter(NullFormatter())
    _log_axes(share_axes, elements, "share of the machine's bandwidth", "normalized")
    share_axes.yaxis.set_major_formatter(FuncFormatter(_percent_tick))
    share_axes.axhline(1.0, color="#333333", linewidth=1, linestyle=":")
    figure.suptitle(
        f"{family}, {dtype}: fastest backend per machine", fontsize="medium"
    )
    _legend_below(figure, handles, columns=1)
    return figure


def _byte_tick(count: float, _position=None) -> str:
    return format_bytes(count).replace(".0 ", " ")


def memory_plot(
    family: str,
    backends: Sequence[str],
    sizes: Sequence[Size],
    dtype: str,
    memory_limit: int | None,
) -> Figure:
    """Plot the estimated bytes one call needs, inputs included, against N x L.

    The estimate is the registry's Backend.memory model plus the two input
    arrays (softgrad.cases.memory_need), the figure the sweep compares with
    its memory limit before it runs a case.
    """
    figure = Figure(figsize=(6.4, 4.6), layout="constrained")
    axes = figure.add_subplot()
    baseline = baseline_backend(family)
    class_counts = sorted({size.classes for size in sizes})
    markers = {c: _MARKERS[i % len(_MARKERS)] for i, c in enumerate(class_counts)}
    handles = []
    for backend, color in _backend_colors(family, backends).items():
        if backend not in backends:
            continue
        linestyle = "--" if backend == baseline else "-"
        for classes in class_counts:
            line = sorted(size for size in sizes if size.classes == classes)
            need = [memory_need(Case(family, backend, size, dtype)) for size in line]
            axes.plot(
                [size.n * size.classes for size in line],
                need,
                color=color,
                marker=markers[classes],
                markersize=4,
                linewidth=1.2,
                linestyle=linestyle,
            )
        handles.append(Line2D([], [], color=color, linestyle=linestyle, label=backend))
    if memory_limit:
        axes.axhline(memory_limit, color="#b00020", linewidth=1, linestyle=":")
        axes.annotate(
            f"memory limit {format_bytes(memory_limit)}",
            (0.01, memory_limit),
            xycoords=("axes fraction", "data"),
            va="bottom",
            fontsize="small",
            color="#b00020",
        )
    _log_axes(
        axes,
        "N × L (elements in each input array)",
        "bytes per call",
        f"{family}, {dtype}",
    )
    # Ticks at powers of 32 (1 KiB, 32 KiB, 1 MiB, ...) read as round binary sizes.
    axes.yaxis.set_major_locator(LogLocator(base=32))
    axes.yaxis.set_major_formatter(FuncFormatter(_byte_tick))
    axes.yaxis.set_minor_locator(LogLocator(base=32, subs=(2, 4, 8, 16)))
    axes.yaxis.set_minor_formatter(NullFormatter())
    _legend_below(figure, handles)
    return figure


def compile_plot(compile_times: pd.DataFrame) -> Figure:
    """Draw one bar per compiled backend and dtype: the first call's compile time.

    `compile_times` has columns label and compile_s, one row per bar.
    """
    height = 0.28 * len(compile_times) + 1.2
    figure = Figure(figsize=(6.4, height), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(compile_times))
    axes.barh(positions, compile_times["compile_s"], color=_COLORS[0], height=0.6)
    axes.set_yticks(positions, labels=list(compile_times["label"]), fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("compile time of the first call (s)")
    axes.grid(True, axis="x", alpha=0.35)
    for position, seconds in zip(positions, compile_times["compile_s"]):
        axes.annotate(
            f" {seconds:.2f} s",
            (seconds, position),
            va="center",
            fontsize="x-small",
        )
    axes.margins(x=0.15)
    return figure
