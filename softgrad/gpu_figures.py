"""The closing figures of a GPU run, read from its raw results and GPU probe.

For each GPU backend at the sizes below: its median time, its share of the
device's measured copy bandwidth, and its speedup over the fastest CPU backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

import impls
from softgrad.cases import SoftgradError
from softgrad.grid import DTYPES, GPT2, IMAGENET, LLAMA3, Size, bytes_moved

log = logging.getLogger(__name__)

# ImageNet at a large batch, GPT-2 and Llama 3 vocabularies at language-model batches.
FIGURE_SIZES = (Size(4096, IMAGENET), Size(256, GPT2), Size(64, LLAMA3))

# CPU backends do not take the 16-bit types; GPU results in them are compared
# with the fastest CPU backend in float32.
CPU_DTYPE_FOR = {"float16": "float32", "bfloat16": "float32"}

FIGURE_COLUMNS = (
    "family",
    "n",
    "classes",
    "dtype",
    "backend",
    "median_s",
    "gb_per_s",
    "bandwidth_share",
    "best_cpu_backend",
    "best_cpu_dtype",
    "best_cpu_s",
    "speedup_vs_cpu",
)


class ResultsError(SoftgradError, ValueError):
    """A raw results or probe file that cannot be read as softgrad wrote it."""


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"cannot read `{path}` as JSON: {error}") from None


def _device_of(family: str, backend: str) -> str:
    """Return where a backend computes, from the registry; unknown names are CPU."""
    try:
        return impls.get(family, backend).device
    except impls.InputError:
        log.warning(
            "backend %s/%s is not in the registry; taken as CPU", family, backend
        )
        return "cpu"


def read_timings(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read the median time of every case in raw pytest-benchmark files.

    When several files time the same case, the last file wins.
    """
    rows = []
    for path in paths:
        data = _read_json(Path(path))
        benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
        if not isinstance(benchmarks, list):
            raise ResultsError(
                f"`{path}` has no `benchmarks` list; expected the JSON that "
                f"`softgrad run` or `pytest --benchmark-json` writes"
            )
        for benchmark in benchmarks:
            extra = benchmark.get("extra_info", {})
            try:
                row = {key: extra[key] for key in ("family", "backend", "dtype")}
                row["n"], row["classes"] = int(extra["n"]), int(extra["classes"])
                row["median_s"] = float(benchmark["stats"]["median"])
            except (KeyError, TypeError, ValueError) as error:
                raise ResultsError(
                    f"`{path}`: benchmark `{benchmark.get('name', '?')}` lacks "
                    f"{error}; expected a case timed by softgrad's sweep"
                ) from None
            row["device"] = extra.get("device") or _device_of(
                row["family"], row["backend"]
            )
            rows.append(row)
    key = ["family", "backend", "n", "classes", "dtype"]
    columns = [*key, "device", "median_s"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


def _fastest_cpu(timings: pd.DataFrame, family: str, size: Size, dtype: str):
    """Return the fastest CPU row at a family, size and dtype, or None."""
    cpu = timings[
        (timings["device"] == "cpu")
        & (timings["family"] == family)
        & (timings["n"] == size.n)
        & (timings["classes"] == size.classes)
        & (timings["dtype"] == dtype)
    ]
    if cpu.empty:
        return None
    return cpu.loc[cpu["median_s"].idxmin()]


def closing_figures(
    timings: pd.DataFrame,
    bandwidth_gb_per_s: float | None,
    sizes: Iterable[Size] = FIGURE_SIZES,
) -> pd.DataFrame:
    """Compute FIGURE_COLUMNS for every GPU timing at `sizes`.

    `bandwidth_gb_per_s` is the probe's measured copy bandwidth; without it the
    share is NaN. A GPU case with no CPU timing to compare gets NaN speedup.
    """
    chosen = {(size.n, size.classes) for size in sizes}
    gpu = timings[timings["device"] == "gpu"]
    rows = []
    for row in gpu.itertuples(index=False):
        if (row.n, row.classes) not in chosen:
            continue
        size = Size(row.n, row.classes)
        rate = bytes_moved(row.family, size, row.dtype) / row.median_s / 1e9
        cpu_dtype = CPU_DTYPE_FOR.get(row.dtype, row.dtype)
        cpu = _fastest_cpu(timings, row.family, size, cpu_dtype)
        rows.append(
            {
                "family": row.family,
                "n": row.n,
                "classes": row.classes,
                "dtype": row.dtype,
                "backend": row.backend,
                "median_s": row.median_s,
                "gb_per_s": rate,
                "bandwidth_share": (
                    rate / bandwidth_gb_per_s if bandwidth_gb_per_s else math.nan
                ),
                "best_cpu_backend": None if cpu is None else cpu["backend"],
                "best_cpu_dtype": cpu_dtype,
                "best_cpu_s": math.nan if cpu is None else cpu["median_s"],
                "speedup_vs_cpu": (
                    math.nan if cpu is None else cpu["median_s"] / row.median_s
                ),
            }
        )
    frame = pd.DataFrame(rows, columns=list(FIGURE_COLUMNS))
    family_order = {name: rank for rank, name in enumerate(impls.FAMILIES)}
    dtype_order = {name: rank for rank, name in enumerate((*DTYPES, *CPU_DTYPE_FOR))}
    ranks = {
        "_family": frame["family"].map(family_order),
        "_elements": frame["n"] * frame["classes"],
        "_dtype": frame["dtype"].map(dtype_order),
    }
    frame = frame.assign(**ranks).sort_values([*ranks, "median_s"], kind="stable")
    return frame.drop(columns=list(ranks)).reset_index(drop=True)


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _number(value: float, suffix: str = "", scale: float = 1.0) -> str:
    """Format with three significant digits, without an exponent below 10^6."""
    if not math.isfinite(value):
        return "—"
    value *= scale
    text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + suffix


def format_figures(figures: pd.DataFrame) -> str:
    """Format the figures as a markdown table with units."""
    table = pd.DataFrame(
        {
            "family": figures["family"],
            "N x L": [f"{n} x {c}" for n, c in zip(figures["n"], figures["classes"])],
            "dtype": figures["dtype"],
            "backend": figures["backend"],
            "median": figures["median_s"].map(_seconds),
            "GB/s": figures["gb_per_s"].map(_number),
            "share of copy bandwidth": figures["bandwidth_share"].map(
                lambda share: _number(share, " %", 100)
            ),
            "fastest CPU backend": [
                f"{name} ({dtype})" if isinstance(name, str) else "—"
                for name, dtype in zip(
                    figures["best_cpu_backend"], figures["best_cpu_dtype"]
                )
            ],
            "CPU median": figures["best_cpu_s"].map(_seconds),
            "speedup vs CPU": figures["speedup_vs_cpu"].map(
                lambda ratio: _number(ratio, "×")
            ),
        }
    )
    return table.to_markdown(index=False)


def bandwidth_from_probe(probe) -> tuple[float | None, str]:
    """Return the probe's copy bandwidth in GB/s and "", or None and the reason.

    `probe` is a JSON file written by `python -m softgrad.gpu_probe`, or the
    probe's dict itself.
    """
    if not isinstance(probe, dict):
        path, probe = probe, _read_json(Path(probe))
        if not isinstance(probe, dict):
            raise ResultsError(f"`{path}` is not a GPU probe: expected a JSON object")
    rate = probe.get("gpu_bandwidth_gb_per_s")
    if rate:
        return float(rate), ""
    reason = probe.get("gpu_bandwidth_reason") or probe.get("gpu_reason")
    return None, reason or "the probe has no `gpu_bandwidth_gb_per_s`"


def bandwidth_from_runs(paths: Iterable[str | Path]) -> tuple[float | None, str]:
    """Return the copy bandwidth that `softgrad run` stored with the last run."""
    for path in reversed(list(paths)):
        data = _read_json(Path(path))
        section = data.get("softgrad") if isinstance(data, dict) else None
        machine = section.get("machine") if isinstance(section, dict) else None
        if isinstance(machine, dict) and any(key.startswith("gpu_") for key in machine):
            return bandwidth_from_probe(machine)
    return None, "the results hold no GPU probe; pass one with --probe"


def main(argv: list[str] | None = None) -> int:
    """Print the closing figures: `python -m softgrad.gpu_figures RAW... --probe P`."""
    parser = argparse.ArgumentParser(
        prog="python -m softgrad.gpu_figures",
        description="Print each GPU backend's time, share of measured device "
        "bandwidth and speedup over the fastest CPU backend.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="raw results JSON files")
    parser.add_argument(
        "--probe",
        type=Path,
        help="JSON written by `python -m softgrad.gpu_probe`; by default the "
        "probe that `softgrad run` stored with the results",
    )
    options = parser.parse_args(argv)
    try:
        timings = read_timings(options.files)
        if options.probe:
            bandwidth, reason = bandwidth_from_probe(options.probe)
        else:
            bandwidth, reason = bandwidth_from_runs(options.files)
    except ResultsError as error:
        sys.stderr.write(f"gpu_figures: error: {error}\n")
        return 2

    figures = closing_figures(timings, bandwidth)
    if figures.empty:
        sys.stderr.write(
            "gpu_figures: error: no GPU backend was timed at "
            f"{', '.join(str(size) for size in FIGURE_SIZES)}\n"
        )
        return 1
    if bandwidth:
        sys.stdout.write(f"Measured device copy bandwidth: {bandwidth:.0f} GB/s\n\n")
    else:
        sys.stdout.write(f"Device copy bandwidth not measured: {reason}\n\n")
    sys.stdout.write(format_figures(figures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
