"""Time and memory of every backend of each family, over softgrad's default size grid.

The sizes are softgrad.grid.DEFAULT_GRID: class counts from the textbook example
to GPT-2's vocabulary, with typical batch sizes. That grid stops at a few
thousand rows so that the default `asv run` ends in a few minutes on two cores.
"""

from __future__ import annotations

import tracemalloc

import impls
from softgrad.cases import Case, Skip, prepare
from softgrad.grid import DEFAULT_GRID, DTYPES

# Cases predicted to take longer per call are skipped: asv calls each timed case
# at least a dozen times, and the default run must stay within a few minutes.
TIME_BUDGET_S = 0.25

SIZES = {str(size): size for size in DEFAULT_GRID}
PARAM_NAMES = ("backend", "size", "dtype")


def _start_numba_compiler():
    """Compile a trivial function so that numba's compiler is started in this process.

    asv's forkserver imports this module once and forks every benchmark process
    from it. A fork that inherits a started compiler loaded a cached kernel in
    tens of milliseconds. A fork that had to start the compiler took 0.5 to 1 s
    on two busy cores.
    """
    try:
        import numba
    except ImportError:
        return
    numba.njit(lambda: 0)()


# Import every CPU backend's module (numba included) at discovery, so that the
# forked benchmark processes start with them loaded. GPU backends load in each
# benchmark process instead, because CUDA initialized before fork() cannot be used
# in the child process.
_AVAILABLE = {
    backend.key: backend.available
    for backend in impls.backends()
    if backend.device == "cpu"
}
_start_numba_compiler()

# The prepared cases of this process, or the reason a case is skipped. asv runs
# setup again before every sample. The backends never modify their inputs, so
# the inputs, the warm-up and the reference check are done once per process.
_PREPARED: dict = {}


def family_params(family):
    """Return asv's params for `family`: its CPU backends, the grid's sizes, the dtypes.

    GPU backends are left out. The asv environment installs neither CuPy nor
    PyTorch, so they could only be skipped, and asv still starts a process for
    every skipped case in every round.
    """
    names = tuple(b.name for b in impls.backends(family) if b.device == "cpu")
    return (names, tuple(SIZES), DTYPES)


def prepare_case(family, backend, size, dtype):
    """Return the case prepared and checked, or raise NotImplementedError to skip it.

    NotImplementedError is asv's way to skip a parameter combination; its message
    is the reason (backend unavailable, memory limit, time budget). A result that
    differs from the reference raises MismatchError, which fails the benchmark.
    """
    case = Case(family, backend, SIZES[size], dtype)
    if case not in _PREPARED:
        try:
            _PREPARED[case] = prepare(case, time_budget_s=TIME_BUDGET_S)
        except Skip as reason:
            _PREPARED[case] = str(reason)
    prepared = _PREPARED[case]
    if isinstance(prepared, str):
        raise NotImplementedError(prepared)
    return prepared


def traced_peak_bytes(function, arrays):
    """Call `function(*arrays)` once and return the peak bytes traced meanwhile."""
    tracemalloc.start()
    try:
        function(*arrays)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _Gradient:
    """One family's backends, each on the same seeded inputs and checked first."""

    family = ""
    timeout = 30
    # Per round: at least 5 samples, then more until 50 samples or 0.05 s. With a
    # setup method, asv's runner times one call per sample.
    repeat = (5, 50, 0.05)
    # setup has already called the backend three times (two probes and the
    # checked call), so asv's default warm-up of 0.1 s per round is halved.
    warmup_time = 0.05

    def setup(self, backend, size, dtype):
        prepared = prepare_case(self.family, backend, size, dtype)
        self.backend = prepared.backend
        self.arrays = prepared.arrays  # numpy inputs, for the reference
        self.native = prepared.native  # the same inputs as the backend's arrays

    def time_gradient(self, backend, size, dtype):
        """Time one call, allocation of the output included (no `out=`).

        asv ignores the returned gradient. The tests check it against the reference.
        """
        return self.backend.call_native(*self.native)

    def peakmem_gradient(self, backend, size, dtype):
        """Peak RSS of the whole process, which includes numba and the setup's check."""
        self.backend.call_native(*self.native)

    def track_peak_allocated_bytes(self, backend, size, dtype):
        """Peak bytes numpy allocates during one call, output included.

        Memory that a backend allocates outside Python's allocators (a GPU, a
        peer library's own allocator) is not traced.
        """
        return traced_peak_bytes(self.backend.call_native, self.native)

    track_peak_allocated_bytes.unit = "bytes"


class SoftmaxBackward(_Gradient):
    family = "softmax_backward"
    params = family_params(family)
    param_names = PARAM_NAMES


class CceSoftmaxBackward(_Gradient):
    family = "cce_softmax_backward"
    params = family_params(family)
    param_names = PARAM_NAMES


class CceLogitsBackward(_Gradient):
    family = "cce_logits_backward"
    params = family_params(family)
    param_names = PARAM_NAMES
