"""A description of the machine a sweep runs on: CPU, memory, versions and thread pools.

`probe()` returns plain JSON types, so the description can be stored in the
results file beside the timings it explains.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
from importlib import metadata
from pathlib import Path

import psutil
import threadpoolctl

log = logging.getLogger(__name__)

# Environment variables that change which OpenBLAS kernels run, and so the timings.
BLAS_ENVIRONMENT = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

PACKAGES = ("numpy", "numba", "pandas")

# The fields of threadpoolctl.threadpool_info() worth keeping for each library.
_POOL_FIELDS = (
    "user_api",
    "internal_api",
    "prefix",
    "version",
    "num_threads",
    "threading_layer",
    "architecture",
    "filepath",
)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Return the CPU model name from `cpuinfo`, else platform's best guess."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        # x86 kernels write "model name", some ARM and POWER kernels "Model" or "cpu".
        if key.strip() in ("model name", "Model", "cpu") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def package_version(name: str) -> str | None:
    """Return the installed version of package `name`, or None when it is missing."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def thread_pools() -> list[dict]:
    """List the BLAS and OpenMP libraries loaded in this process and their threads."""
    # threadpoolctl lists only loaded libraries, and importing numpy loads its BLAS.
    importlib.import_module("numpy")
    pools = threadpoolctl.threadpool_info()
    return [{key: pool.get(key) for key in _POOL_FIELDS} for pool in pools]


def describe_pool(pool: dict) -> str:
    """Describe one thread pool of thread_pools() as "openblas 0.3.27 (Haswell), 2 threads".

    OpenMP runtimes carry no version, so they are named by library, as in
    "libgomp, 2 threads".
    """
    if pool.get("user_api") == "openmp":
        name = str(pool.get("prefix") or pool.get("internal_api") or "openmp")
    else:
        name = " ".join(
            str(pool[key]) for key in ("internal_api", "version") if pool.get(key)
        )
    if pool.get("architecture"):
        name += f" ({pool['architecture']})"
    return f"{name}, {pool.get('num_threads')} threads"


def blas_text(pools: list[dict]) -> str:
    """Describe the BLAS libraries of `pools` in one line, for a terminal or a table."""
    described = [
        describe_pool(pool) for pool in pools if pool.get("user_api") == "blas"
    ]
    return "; ".join(described) or "no BLAS loaded"


def numba_threads() -> dict:
    """Return numba's thread count and threading layer, or Nones without numba."""
    try:
        numba = importlib.import_module("numba")
    except ImportError:
        return {"numba_threads": None, "numba_threading_layer": None}
    threads = numba.get_num_threads()  # this also starts numba's threading layer
    try:
        layer = numba.threading_layer()
    except ValueError:  # raised when no parallel kernel has started the layer
        layer = None
    return {"numba_threads": threads, "numba_threading_layer": layer}


def probe() -> dict:
    """Describe this machine and the software that times the backends.

    Memory is in bytes. A package or environment variable that is missing is
    None. `thread_pools` lists every BLAS and OpenMP library loaded in this
    process, as threadpoolctl reports them, and `blas` sums up the BLAS ones.
    """
    # numba first, because starting its threading layer may load an OpenMP runtime.
    numba = numba_threads()
    pools = thread_pools()
    description = {
        "cpu": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        **{name: package_version(name) for name in PACKAGES},
        **numba,
        "blas": blas_text(pools),
        "thread_pools": pools,
        "environment": {name: os.environ.get(name) for name in BLAS_ENVIRONMENT},
    }
    log.debug("machine: %s", description)
    return description
