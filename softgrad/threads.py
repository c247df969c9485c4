"""One thread count for every library that runs backends: BLAS, numba, PyTorch, XLA.

Comparing backends is fair only when each may use as many threads as the
others, so a sweep sets them all to one count and records what is in use.
"""

from __future__ import annotations

import logging
import os
import sys

import numba
import numpy as np
import threadpoolctl

log = logging.getLogger(__name__)

# XLA's CPU client sizes its thread pool from this variable when it starts.
XLA_THREADS_VARIABLE = "PJRT_NPROC"

# Kept so that the limits stay in force; threadpoolctl undoes them on restore.
_limits: list = []


@numba.njit(parallel=True, cache=True)
def _touch_threads(values):
    for i in numba.prange(values.shape[0]):
        values[i] += 1.0


def max_threads() -> int:
    """Return the most threads numba can run: NUMBA_NUM_THREADS, all cores by default."""
    return numba.config.NUMBA_NUM_THREADS


def set_threads(count: int) -> dict:
    """Use `count` threads in BLAS, OpenMP, numba, PyTorch and XLA; return the counts.

    BLAS and OpenMP libraries loaded later, and PyTorch, take numba's count
    when impls.peers loads them. XLA reads its count only when JAX starts its
    CPU client, so a client already started keeps the count it had.
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"`count` must be an int, got {type(count).__name__}")
    if not 1 <= count <= max_threads():
        raise ValueError(
            f"`count` is {count}, expected a thread count from 1 to {max_threads()}, "
            f"the cores numba sees"
        )
    numba.set_num_threads(count)
    # With numba's OpenMP layer, its first parallel region resets OpenBLAS's
    # thread count (numba 0.68, OpenBLAS 0.3.31), so one runs before the limits.
    _touch_threads(np.zeros(count))
    _limits.append(threadpoolctl.threadpool_limits(limits=count))
    os.environ[XLA_THREADS_VARIABLE] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    counts = thread_counts()
    log.debug("threads set to %d: %s", count, counts)
    return counts


def thread_counts() -> dict:
    """Return the threads each library uses now; None for a library not loaded.

    `blas` and `openmp` are the largest counts of their loaded libraries, as
    threadpoolctl reports them. `xla` is the count JAX's CPU client takes when
    it starts, from PJRT_NPROC, or None when that is unset and every core is used.
    """
    pools = threadpoolctl.threadpool_info()

    def largest(api):
        counts = [pool["num_threads"] for pool in pools if pool["user_api"] == api]
        return max(counts) if counts else None

    torch = sys.modules.get("torch")
    xla = os.environ.get(XLA_THREADS_VARIABLE)
    return {
        "blas": largest("blas"),
        "openmp": largest("openmp"),
        "numba": numba.get_num_threads(),
        "torch": torch.get_num_threads() if torch is not None else None,
        "xla": int(xla) if xla and xla.isdigit() else None,
    }
