"""Cases of a sweep: which (backend, size, dtype) to time, and the checks before timing.

Every case passes the guards (dtype supported, memory estimate under the
limit, predicted time under the budget) and the reference check before it is
timed; a case that fails a guard is skipped with a reason a person can act on.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

import numba.core.event
import numpy as np
import psutil

import impls
from softgrad.grid import (
    ALL_DTYPES,
    DTYPES,
    GRIDS,
    HALF_DTYPES,
    SEED,
    Size,
    make_inputs,
    numpy_dtype,
)

log = logging.getLogger(__name__)

# Relative error allowed against the float64 oracle: max |error| / max |reference|.
# For the 16-bit types it is twice the unit roundoff (2^-11 for float16, 2^-8 for
# bfloat16): rounding the result once costs up to one unit, and sums in float32
# (unit roundoff 2^-24) add far less. Summing a long row's exponentials in 16 bits
# fails it several times over.
# NOTE: a CCE gradient is at most 1 / N in size, so for N > 16384 it lies in
# float16's subnormal range, where rounding errors stop shrinking with the value;
# the float16 tolerance is then exceeded once N passes about 32768.
TOLERANCE = {"float64": 1e-10, "float32": 2e-4, "float16": 1e-3, "bfloat16": 8e-3}

DEFAULT_TIME_BUDGET_S = 3.0  # per call; slower cases are reported as skipped
PROBE_ROWS = 8  # rows timed first to predict the time of a full call
PROBE_MIN_S = 0.05  # a probe this long predicts well enough
SLOW_CALL_S = 0.1  # calls slower than this are timed in a fixed few rounds
SLOW_ROUNDS = 3

DEFAULT_VARIANT = "default"
# A variant of a case: the logits' distribution (see softgrad.grid.DISTRIBUTIONS)
# and the cross-entropy options passed to a CCE backend and to the reference.
# "weight" draws one seeded weight in [0.5, 1.5) per class; "ignore_index"
# leaves out the samples labelled 0.
VARIANTS = {
    DEFAULT_VARIANT: ("normal", {}),
    "peaked": ("peaked", {}),
    "large": ("large", {}),
    "label_smoothing=0.1": ("normal", {"label_smoothing": 0.1}),
    "weight": ("normal", {"weight": None}),
    "ignore_index": ("normal", {"ignore_index": 0}),
    "reduction=sum": ("normal", {"reduction": "sum"}),
}
WEIGHT_LOW, WEIGHT_HIGH = 0.5, 1.5


def default_memory_limit() -> int:
    """Return a quarter of this machine's physical memory, in bytes."""
    return psutil.virtual_memory().total // 4


class SoftgradError(Exception):
    """A sweep cannot go on: bad options, a wrong answer, an unreadable file."""


class MismatchError(SoftgradError):
    """A backend's result differs from the float64 reference beyond tolerance."""


class Skip(Exception):
    """A case that is not timed, with the reason."""


@dataclass(frozen=True)
class Case:
    """One (backend, size, dtype) of a sweep."""

    family: str
    backend: str
    size: Size
    dtype: str
    variant: str = DEFAULT_VARIANT

    @property
    def _suffix(self) -> str:
        return "" if self.variant == DEFAULT_VARIANT else f"-{self.variant}"

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.size}-{self.dtype}{self._suffix}"

    @property
    def key(self) -> tuple[str, str, int, int, str, str]:
        """The case as (family, backend, n, classes, dtype, variant), as results
        store it."""
        return (
            self.family,
            self.backend,
            self.size.n,
            self.size.classes,
            self.dtype,
            self.variant,
        )

    @property
    def group(self) -> str:
        group = f"{self.family} N={self.size.n} L={self.size.classes} {self.dtype}"
        return group if self.variant == DEFAULT_VARIANT else f"{group} {self.variant}"

    @property
    def distribution(self) -> str:
        return VARIANTS[self.variant][0]


def has_options(variant: str) -> bool:
    """Return True when `variant` passes cross-entropy options (CCE families only)."""
    return bool(VARIANTS[variant][1])


def check_variants(variants) -> list[str]:
    """Return `variants` as a list, or raise SoftgradError naming an unknown one."""
    variants = list(variants or [DEFAULT_VARIANT])
    for variant in variants:
        if variant not in VARIANTS:
            raise SoftgradError(
                f"unknown variant `{variant}`, expected one of: {', '.join(VARIANTS)}"
            )
    return variants


def variant_options(case: Case) -> dict:
    """Return the cross-entropy options of `case`'s variant, with its weights drawn."""
    options = dict(VARIANTS[case.variant][1])
    if "weight" in options:
        rng = np.random.default_rng(
            np.random.SeedSequence([SEED, case.size.n, case.size.classes, 7])
        )
        options["weight"] = rng.uniform(WEIGHT_LOW, WEIGHT_HIGH, case.size.classes)
    return options


def format_bytes(count: float) -> str:
    """Format a byte count in binary units, for example "512.0 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def plan(
    grid: str = "default",
    families=None,
    backends=None,
    sizes=None,
    dtypes=None,
    variants=None,
) -> list[Case]:
    """List the cases of a sweep, in family, size, dtype, variant, backend order.

    Variants with cross-entropy options apply to the CCE families only.
    """
    variants = check_variants(variants)
    families = list(families or impls.FAMILIES)
    for family in families:
        impls.backends(family)  # rejects an unknown family
    if grid not in GRIDS:
        raise SoftgradError(
            f"unknown grid `{grid}`, expected one of: {', '.join(GRIDS)}"
        )
    sizes = list(sizes or GRIDS[grid])
    dtypes = list(dtypes or DTYPES)
    for dtype in dtypes:
        if dtype not in ALL_DTYPES:
            raise SoftgradError(
                f"unsupported dtype `{dtype}`, expected one of: {', '.join(ALL_DTYPES)}"
            )
    known = {b.name for b in impls.backends()}
    for name in backends or ():
        if name not in known:
            raise SoftgradError(
                f"unknown backend `{name}`, expected one of: {', '.join(sorted(known))}"
            )
    cases = []
    for family in families:
        chosen = [
            b for b in impls.backends(family) if not backends or b.name in backends
        ]
        for size in sizes:
            for dtype in dtypes:
                for variant in variants:
                    if family == "softmax_backward" and has_options(variant):
                        continue
                    cases += [
                        Case(family, b.name, size, dtype, variant) for b in chosen
                    ]
    return cases


def reference_check_memory(case: Case) -> int:
    """Estimate the bytes the reference check allocates beside the inputs.

    The backend's result stays alive while the float64 oracle works in
    longdouble: at most four longdouble arrays, one float64 array and two
    longdouble values per row at a time (64 bytes per element where longdouble
    has 16, traced with tracemalloc at 1000 x 1000 for CCE with class indices).
    """
    longdouble = np.dtype(np.longdouble).itemsize
    per_element = impls.itemsize(case.dtype) + 4 * longdouble + 8
    return case.size.n * (case.size.classes * per_element + 2 * longdouble)


def memory_need(case: Case) -> int:
    """Estimate the bytes a call needs: its inputs plus what it allocates."""
    backend = impls.get(case.family, case.backend)
    inputs = 2 * case.size.n * case.size.classes * impls.itemsize(case.dtype)
    return inputs + backend.memory(case.size.n, case.size.classes, case.dtype)


def host_memory_need(case: Case) -> int:
    """Estimate the host bytes a case needs at its peak.

    That is its inputs, plus the larger of what the reference check allocates
    and, for a CPU backend, what the call allocates.
    """
    inputs = 2 * case.size.n * case.size.classes * impls.itemsize(case.dtype)
    check = inputs + reference_check_memory(case)
    if impls.get(case.family, case.backend).device != "cpu":
        return check
    return max(memory_need(case), check)


def check_static(case: Case, memory_limit: int) -> None:
    """Raise Skip when the case cannot run here, without running anything."""
    backend = impls.get(case.family, case.backend)
    if not backend.available:
        raise Skip(backend.reason)
    if case.dtype not in backend.dtypes:
        raise Skip(f"{case.dtype} is not supported by {backend.name}")
    if case.distribution == "large" and backend.divides_by_probs:
        raise Skip(
            f"{backend.name} divides by probabilities that underflow to 0 on "
            "large logits, so its gradient is NaN there (a known limit)"
        )
    try:
        numpy_dtype(case.dtype)
    except ImportError as error:
        raise Skip(str(error)) from None
    # A GPU backend's inputs and buffers live in the device's memory, not the host's.
    device_free = backend.memory_available()
    need = memory_need(case)
    if device_free is not None and need > device_free:
        raise Skip(
            f"needs {format_bytes(need)} of device memory, "
            f"{format_bytes(device_free)} free"
        )
    host_need = host_memory_need(case)
    if host_need > memory_limit:
        raise Skip(
            f"needs {format_bytes(host_need)}, limit {format_bytes(memory_limit)}"
        )


def validate_inputs(family: str, arrays) -> None:
    """Run the whole-array checks the backends leave out: finite values, one-hot rows."""
    first, second = arrays
    name = impls.ARGUMENTS[family][0]
    if not np.isfinite(first).all():
        raise impls.InputError(f"`{name}` contains NaN or infinity")
    if family == "softmax_backward" and not np.isfinite(second).all():
        raise impls.InputError("`dvalues` contains NaN or infinity")
    if family != "softmax_backward" and np.ndim(second) == 2:
        one_hot = ((second == 0) | (second == 1)).all(axis=1) & (second.sum(axis=1) == 1)
        if not one_hot.all():
            row = int(np.flatnonzero(~one_hot)[0])
            raise impls.InputError(
                f"one-hot `labels` row {row} is not one-hot: {second[row][:8]}"
            )


def warm_up(
    backend: impls.Backend, arrays, options: dict | None = None
) -> tuple[float, float]:
    """Compile `backend`, and the backends in its compiles_with, on a one-row input.

    Returns the seconds the calls took (with a load from numba's cache, if
    any) and the seconds numba spent compiling, which is 0.0 when nothing was
    compiled. Compiling here keeps the compile time out of every timing.
    """
    tiny = tuple(np.ascontiguousarray(a[:1]) for a in arrays)
    others = [impls.get(backend.family, name) for name in backend.compiles_with]
    with numba.core.event.install_recorder("numba:compile") as recorder:
        start = time.perf_counter()
        for warmed in [backend, *others]:
            warmed(*tiny, **(options or {}))
        seconds = time.perf_counter() - start
    return seconds, _outermost_seconds(recorder.buffer)


def _outermost_seconds(buffer) -> float:
    """Sum the durations of the outermost events in `buffer`, (time, event) pairs.

    Compiling a kernel compiles the functions it calls inside its own event,
    so only events at depth 0 count.
    """
    total, depth, started = 0.0, 0, 0.0
    for stamp, event in buffer:
        if event.is_start:
            if depth == 0:
                started = stamp
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                total += stamp - started
    return total


def _fastest_call(backend, arrays, rows: int) -> float:
    head = tuple(np.ascontiguousarray(a[:rows]) for a in arrays)
    fastest = float("inf")
    for _ in range(2):  # the first call may pay for page faults and caches
        start = time.perf_counter()
        backend(*head)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def predict_seconds(backend, arrays, time_budget_s: float = float("inf")) -> float:
    """Predict one call's time from calls on the first rows.

    A prediction near the budget is refined on four times as many rows, until
    the probe itself takes PROBE_MIN_S or covers every row, because a probe
    of a few rows on a busy machine can be off by a factor of several.
    """
    n = arrays[0].shape[0]
    rows = min(n, PROBE_ROWS)
    while True:
        elapsed = _fastest_call(backend, arrays, rows)
        predicted = elapsed * n / rows
        settled = rows == n or elapsed >= PROBE_MIN_S
        if settled or predicted > 4 * time_budget_s or predicted < time_budget_s / 4:
            return predicted
        rows = min(n, 4 * rows)


def reference_inputs(arrays) -> tuple:
    """Widen float16 and bfloat16 arrays to float32, exactly, for the float64 oracle."""
    return tuple(
        array.astype(np.float32) if str(array.dtype) in HALF_DTYPES else array
        for array in arrays
    )


def relative_error(result: np.ndarray, expected: np.ndarray) -> float:
    """Return max |result - expected| / max |expected|, in float64."""
    scale = np.abs(expected).max()
    error = np.abs(result.astype(np.float64) - expected).max()
    return float(error / scale) if scale > 0 else float(error)


@dataclass
class Prepared:
    """A case ready to time: its backend, inputs and what was learned before timing."""

    case: Case
    backend: impls.Backend
    arrays: tuple  # numpy inputs
    native: tuple  # the same inputs as the backend's native arrays, what is timed
    convert_s: float  # time to convert the numpy inputs to native arrays
    predicted_s: float  # one call's time, predicted from its first rows
    # Seconds of the warm-up calls: a compile, or a load from numba's cache.
    compile_s: float | None
    max_error: float
    # Seconds numba spent compiling in the warm-up calls, from its compile events:
    # 0.0 when every kernel came from numba's cache or was compiled before.
    jit_compile_s: float | None = None
    options: dict = field(default_factory=dict)  # the variant's cross-entropy options

    def timed_call(self) -> tuple:
        """Return (function, arguments) of the call to time.

        Without options it is the native call. With options, a numpy backend's
        call takes them natively, and a backend with an adapter computes them on
        its numpy option path, so it is timed on the numpy inputs.
        """
        if not self.options:
            return self.backend.call_native, self.native
        if self.backend.adapter is None:
            return functools.partial(self.backend.call_native, **self.options), (
                self.native
            )
        return functools.partial(self.backend, **self.options), self.arrays


def prepare(
    case: Case,
    memory_limit: int | None = None,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    seed: int = SEED,
) -> Prepared:
    """Build a case's inputs, warm the backend up and check it against the reference.

    Raises Skip when a guard stops the case and MismatchError on a wrong answer.
    """
    memory_limit = default_memory_limit() if memory_limit is None else memory_limit
    check_static(case, memory_limit)
    backend = impls.get(case.family, case.backend)
    arrays = make_inputs(
        case.family, case.size, case.dtype, seed, distribution=case.distribution
    )
    validate_inputs(case.family, arrays)
    options = variant_options(case)
    call = functools.partial(backend, **options) if options else backend

    compile_s = jit_compile_s = None
    if backend.compiled:
        compile_s, jit_compile_s = warm_up(backend, arrays, options)

    predicted = predict_seconds(call, arrays, time_budget_s)
    if predicted > time_budget_s:
        raise Skip(
            f"predicted {predicted:.2f} s per call, time budget {time_budget_s:g} s"
        )

    start = time.perf_counter()
    native = backend.convert(*arrays)
    convert_s = time.perf_counter() - start

    expected = impls.reference(case.family)(*reference_inputs(arrays), **options)
    if options and backend.adapter is not None:
        result = backend(*arrays, **options)
    else:
        result = backend.to_numpy(backend.call_native(*native, **options))
    error = relative_error(result, expected)
    tolerance = TOLERANCE[case.dtype]
    if not error <= tolerance:
        raise MismatchError(
            f"{case.family}/{case.backend} at N={case.size.n}, L={case.size.classes}, "
            f"{case.dtype}, variant {case.variant} is off by {error:.3g} (relative), tolerance {tolerance:g}"
        )
    return Prepared(
        case,
        backend,
        arrays,
        native,
        convert_s,
        predicted,
        compile_s,
        error,
        jit_compile_s,
        options,
    )
