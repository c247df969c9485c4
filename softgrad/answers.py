"""The report's opening answer: one sentence per family on which backend wins where.

Each sentence names the fastest backend at each size of the family's first
dtype, the sizes it wins at, and by how much it beats the baseline and the
runner-up.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from softgrad.grid import DTYPES
from softgrad.summary import baseline_backend, families, format_ratio

MAX_WINNERS = 3  # winners named in one sentence; the rest are counted


def _first_dtype(values) -> str:
    present = list(dict.fromkeys(values))
    return next((dtype for dtype in DTYPES if dtype in present), present[0])


# No-break spaces keep "N × L = 10,240" on one line of the report.
NBSP = "\u00a0"


def _elements(sizes: list[tuple[int, int]]) -> str:
    counts = sorted(n * classes for n, classes in sizes)
    product = f"N{NBSP}×{NBSP}L"
    if counts[0] == counts[-1]:
        return f"{product}{NBSP}={NBSP}{counts[0]:,}"
    return f"{product} {counts[0]:,}{NBSP}to{NBSP}{counts[-1]:,}"


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    if format_ratio(low) == format_ratio(high):
        return format_ratio(low)
    return f"{format_ratio(low)} to {format_ratio(high)}"


def _winners_clause(winners: dict[str, list], total: int) -> str:
    if len(winners) == 1:
        ((backend, sizes),) = winners.items()
        if total == 1:
            n, classes = sizes[0]
            return f"{backend} is fastest at the only size, {n}{NBSP}×{NBSP}{classes}"
        every = "both" if total == 2 else f"all {total}"
        return f"{backend} is fastest at {every} sizes ({_elements(sizes)})"
    named = list(winners.items())[:MAX_WINNERS]
    (first, first_sizes), others = named[0], named[1:]
    parts = [
        f"{first} is fastest at {len(first_sizes)} of {total} sizes"
        f" ({_elements(first_sizes)})"
    ]
    parts += [
        f"{backend} at {len(sizes)} ({_elements(sizes)})" for backend, sizes in others
    ]
    rest = list(winners.items())[MAX_WINNERS:]
    if rest:
        count = sum(len(sizes) for _, sizes in rest)
        if len(rest) == 1:
            backend, sizes = rest[0]
            parts.append(f"{backend} at {count} ({_elements(sizes)})")
        else:
            parts.append(f"{len(rest)} other backends at {count}")
    return ", ".join(parts[:-1]) + f" and {parts[-1]}"


def family_answer(rows: pd.DataFrame, family: str) -> str:
    """Return one sentence saying which backend of `family` wins where, by how much.

    `rows` are the summary's rows of one family on one machine. The sentence
    covers the family's first dtype in DTYPES order (float64 when timed).
    """
    dtype = _first_dtype(rows["dtype"])
    rows = rows[rows["dtype"] == dtype]
    winners: dict[str, list] = {}
    speedups, leads = [], []
    ordered = rows.assign(_elements=rows["n"] * rows["classes"]).sort_values(
        ["_elements", "n"], kind="stable"
    )
    for (n, classes), at in ordered.groupby(["n", "classes"], sort=False):
        at = at.sort_values("median_s", kind="stable")
        winner = at.iloc[0]
        winners.setdefault(winner["backend"], []).append((int(n), int(classes)))
        if math.isfinite(winner["speedup_vs_baseline"]):
            speedups.append(float(winner["speedup_vs_baseline"]))
        if len(at) > 1:
            leads.append(float(at.iloc[1]["median_s"] / winner["median_s"]))
    total = sum(len(sizes) for sizes in winners.values())

    sentence = f"{family} ({dtype}): {_winners_clause(winners, total)}"
    baseline = baseline_backend(family)
    if baseline and set(winners) != {baseline}:
        if speedups:
            where = " where it ran" if len(speedups) < total else ""
            sentence += f", {_range(speedups)} faster than {baseline}{where}"
        else:
            sentence += f", where {baseline} was never timed"
    if leads:
        lead = statistics.median(leads)
        kind = "a median lead" if len(leads) > 1 else "a lead"
        sentence += f", with {kind} of {format_ratio(lead)} over the runner-up"
    return sentence + "."


def answers(summary: pd.DataFrame) -> list[str]:
    """Return one sentence per family of `summary`, in the summary's order."""
    return [
        family_answer(summary[summary["family"] == family], family)
        for family in families(summary)
    ]
