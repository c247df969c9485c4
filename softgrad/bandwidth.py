"""This machine's memory bandwidth: STREAM-like copy and triad in numpy and numba.

The arrays are several times the last-level cache, so each kernel streams from
memory. The best of several repetitions is the bandwidth a backend can reach.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numba
import numpy as np

from softgrad.threads import thread_counts

log = logging.getLogger(__name__)

GB = 1e9  # bandwidth is in decimal gigabytes per second, as STREAM reports it
CACHE_MULTIPLE = 4  # arrays this many times the last-level cache
MIN_ARRAY_BYTES = 64 * 2**20
FALLBACK_CACHE_BYTES = 32 * 2**20
REPETITIONS = 5
TRIAD_SCALAR = 3.0

# Arrays each kernel reads and writes once, as STREAM counts them. numpy's triad
# makes two passes (a multiply, then an add), so it moves more than it is credited.
ARRAYS_MOVED = {"copy": 2, "triad": 3}


def last_level_cache_bytes(cpu: Path = Path("/sys/devices/system/cpu/cpu0")) -> int:
    """Return the size of the highest cache level of `cpu`, read from sysfs."""
    best_level, best_size = 0, 0
    for index in sorted((cpu / "cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = _parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if level > best_level or (level == best_level and size > best_size):
            best_level, best_size = level, size
    if not best_size:
        log.debug(
            "no cache sizes under %s, assuming %d bytes", cpu, FALLBACK_CACHE_BYTES
        )
        return FALLBACK_CACHE_BYTES
    return best_size


def _parse_cache_size(text: str) -> int:
    """Parse sysfs cache sizes such as "32768K" or "32M" into bytes."""
    text = text.strip().upper()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


@numba.njit(parallel=True, cache=True)
def _copy_numba(source, target):
    for i in numba.prange(source.shape[0]):
        target[i] = source[i]


@numba.njit(parallel=True, cache=True)
def _triad_numba(target, first, second, scalar):
    for i in numba.prange(target.shape[0]):
        target[i] = first[i] + scalar * second[i]


def _copy_numpy(source, target):
    np.copyto(target, source)


def _triad_numpy(target, first, second, scalar):
    np.multiply(second, scalar, out=target)
    np.add(target, first, out=target)


def _best_seconds(function, arguments, repetitions: int) -> float:
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        function(*arguments)
        best = min(best, time.perf_counter() - start)
    return best


def probe(array_bytes: int | None = None, repetitions: int = REPETITIONS) -> dict:
    """Measure copy and triad bandwidth in GB/s, numpy and numba parallel.

    `array_bytes` is the size of each of the three float64 arrays; by default
    CACHE_MULTIPLE times the last-level cache, and at least MIN_ARRAY_BYTES.
    `triad_gb_per_s` is the faster triad: the bandwidth the summary's shares
    are measured against. `threads` has the thread counts the kernels ran with.
    """
    if repetitions < 1:
        raise ValueError(f"`repetitions` is {repetitions}, expected at least 1")
    cache = last_level_cache_bytes()
    if array_bytes is None:
        array_bytes = max(CACHE_MULTIPLE * cache, MIN_ARRAY_BYTES)
    length = max(array_bytes // 8, 1)
    started = time.perf_counter()

    # Filled, not empty, so that page faults happen here and not in a timing.
    first = np.full(length, 1.0)
    second = np.full(length, 2.0)
    target = np.full(length, 0.0)
    _copy_numba(first[:1], target[:1])  # compile, or load from numba's cache
    _triad_numba(target[:1], first[:1], second[:1], TRIAD_SCALAR)

    kernels = {
        "copy_numpy": (_copy_numpy, (first, target)),
        "copy_numba": (_copy_numba, (first, target)),
        "triad_numpy": (_triad_numpy, (target, first, second, TRIAD_SCALAR)),
        "triad_numba": (_triad_numba, (target, first, second, TRIAD_SCALAR)),
    }
    gb_per_s = {}
    for name, (function, arguments) in kernels.items():
        seconds = _best_seconds(function, arguments, repetitions)
        moved = ARRAYS_MOVED[name.split("_")[0]] * length * 8
        gb_per_s[name] = moved / seconds / GB

    result = {
        "gb_per_s": gb_per_s,
        "triad_gb_per_s": max(gb_per_s["triad_numpy"], gb_per_s["triad_numba"]),
        "array_bytes": length * 8,
        "last_level_cache_bytes": cache,
        "repetitions": repetitions,
        "threads": thread_counts(),
        "seconds": time.perf_counter() - started,
    }
    log.debug("bandwidth: %s", result)
    return result
