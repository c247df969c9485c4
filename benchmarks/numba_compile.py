"""Compile time of each numba backend, measured without numba's on-disk cache.

Each measurement runs in a new Python process whose NUMBA_CACHE_DIR is an empty
directory, so the first call compiles from scratch. Compile time does not depend
on the array size, so the first size of the grid is enough.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import impls
from softgrad.cases import Case, Skip, check_static, default_memory_limit
from softgrad.grid import DEFAULT_GRID, DTYPES

# Run in the new process: prepare() times the first call on a one-row input.
FIRST_CALL_SCRIPT = """
import sys
from softgrad.cases import Case, prepare
from softgrad.grid import DEFAULT_GRID

family, name, dtype = sys.argv[1:]
print(prepare(Case(family, name, DEFAULT_GRID[0], dtype)).compile_s)
"""


def numba_backends():
    """Return the backends that numba compiles: compiled ones that need numba."""
    return [b for b in impls.backends() if b.compiled and b.requires == "numba"]


def first_call_seconds(backend, dtype, cache_dir):
    """Return the seconds of `backend`'s first call in a new process caching to `cache_dir`."""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    command = [sys.executable, "-c", FIRST_CALL_SCRIPT, backend.family]
    completed = subprocess.run(
        command + [backend.name, dtype],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"first call of {backend.key} in {dtype} failed with exit status "
            f"{completed.returncode}:\n{completed.stderr}"
        )
    return float(completed.stdout.split()[-1])


def compile_seconds(backend, dtype):
    """Return the first call's seconds of `backend` with an empty numba cache."""
    with tempfile.TemporaryDirectory(prefix="softgrad-numba-cache-") as cache_dir:
        return first_call_seconds(backend, dtype, cache_dir)


class NumbaCompile:
    """First call of each numba backend in a new process: mostly compile time.

    It includes numba's one-time start-up of its compiler in that process (typing
    and LLVM set-up), which every user pays on the first call too.
    """

    params = (tuple(backend.key for backend in numba_backends()), DTYPES)
    param_names = ("backend", "dtype")
    timeout = 120

    def setup(self, backend, dtype):
        family, name = backend.split("/")
        try:
            check_static(
                Case(family, name, DEFAULT_GRID[0], dtype), default_memory_limit()
            )
        except Skip as reason:
            raise NotImplementedError(str(reason)) from None
        self.backend = impls.get(family, name)

    def track_compile_seconds(self, backend, dtype):
        """Seconds of the first call after a fresh import, with no cached machine code."""
        return compile_seconds(self.backend, dtype)

    track_compile_seconds.unit = "seconds"
