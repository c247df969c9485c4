"""The numba kernels: their exp against np.exp, out=, serial and parallel paths."""

from __future__ import annotations

import tracemalloc

import numba
import numpy as np
import pytest

import impls
from impls import numba_kernels
from softgrad.cases import TOLERANCE
from softgrad.grid import Size, make_inputs

NUMBA_BACKENDS = [
    pytest.param(b, id=b.key)
    for b in impls.backends()
    if b.target.startswith("impls.numba_kernels:")
]
# Each family's serial, parallel and auto backends.
VARIANTS = {
    "softmax_backward": ("numba_serial", "numba_parallel", "numba_auto"),
    "cce_softmax_backward": (
        "fused_numba",
        "fused_numba_parallel",
        "fused_numba_auto",
    ),
    "cce_logits_backward": (
        "logits_numba",
        "logits_numba_parallel",
        "logits_numba_auto",
    ),
}
# The smallest normal number and where np.exp underflows to 0, per dtype.
TINY = {np.float64: np.finfo(np.float64).tiny, np.float32: np.finfo(np.float32).tiny}
UNDERFLOW = {np.float64: -745.1332191019412, np.float32: -103.97208}


def exp_reference(values):
    """Return np.exp in float64, which is exact enough to judge float32 too."""
    with np.errstate(over="ignore"):
        return np.exp(values.astype(np.float64))


@pytest.mark.parametrize(
    ("dtype", "bound"), [(np.float64, 1.2e-15), (np.float32, 1.5e-7)]
)
def test_exp_relative_error(dtype, bound):
    """Where e^x is a normal number, the kernels' exp is within a few ulp of np.exp."""
    low = -750.0 if dtype == np.float64 else -110.0
    high = 709.0 if dtype == np.float64 else 88.0
    values = np.linspace(low, high, 400_001).astype(dtype)

    result = numba_kernels.fast_exp(values)

    expected = exp_reference(values)
    normal = expected >= TINY[dtype]
    error = np.abs(result[normal] - expected[normal]) / expected[normal]
    assert result.dtype == dtype
    assert error.max() <= bound


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_subnormal_range(dtype):
    """Below the normal range, results are within one subnormal of the rounded e^x."""
    start = np.log(TINY[dtype])
    values = np.linspace(start, UNDERFLOW[dtype] - 1, 100_001).astype(dtype)

    result = numba_kernels.fast_exp(values)

    expected = exp_reference(values).astype(dtype)
    smallest = np.nextafter(dtype(0), dtype(1))
    assert np.abs(result - expected).max() <= smallest


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_underflow_boundary(dtype):
    """Around the underflow boundary, 0 and the smallest subnormal match np.exp."""
    boundary = dtype(UNDERFLOW[dtype])
    values = boundary + np.linspace(-0.01, 0.01, 2001).astype(dtype)

    result = numba_kernels.fast_exp(values)

    assert np.array_equal(result, np.exp(values))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_special_values(dtype):
    """0, very negative, -inf, overflow, +inf and NaN give np.exp's results."""
    values = np.array(
        [0.0, -0.0, -1e4, -1e30, -np.inf, 1e4, np.inf, np.nan], dtype=dtype
    )

    result = numba_kernels.fast_exp(values)

    with np.errstate(over="ignore"):
        expected = np.exp(values)
    assert np.array_equal(result, expected, equal_nan=True)


def test_exp_rejects_integers():
    """fast_exp takes float32 or float64 values only."""
    with pytest.raises(TypeError, match="`values`"):
        numba_kernels.fast_exp(np.arange(3))


@pytest.mark.parametrize("family", VARIANTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_serial_parallel_identical(family, dtype, monkeypatch):
    """Serial, parallel and auto on either side of its threshold are bit-identical."""
    arrays = make_inputs(family, Size(301, 257), dtype, seed=4)
    serial, parallel, auto = (impls.get(family, name) for name in VARIANTS[family])
    thresholds = numba_kernels.PARALLEL_MIN_ELEMENTS

    expected = serial(*arrays)

    assert np.array_equal(parallel(*arrays), expected)
    for threshold in (0, 10**12):
        monkeypatch.setattr(
            numba_kernels, "PARALLEL_MIN_ELEMENTS", dict.fromkeys(thresholds, threshold)
        )
        assert np.array_equal(auto(*arrays), expected), threshold


@pytest.mark.parametrize("kind", sorted(numba_kernels.PARALLEL_MIN_ELEMENTS))
def test_threshold_chooses_path(kind):
    """Auto goes parallel from the threshold on, with more than one row and thread."""
    threshold = numba_kernels.PARALLEL_MIN_ELEMENTS[kind]
    choose = numba_kernels.use_parallel
    threads = numba.get_num_threads()

    assert choose(kind, (2, threshold // 2)) is (threads > 1)
    assert choose(kind, (2, threshold // 2 - 1)) is False
    assert choose(kind, (1, 10 * threshold)) is False


def test_threshold_one_thread():
    """With one numba thread, auto stays serial at any size."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert numba_kernels.use_parallel("vjp", (10**4, 10**4)) is False
    finally:
        numba.set_num_threads(before)


def test_parallel_kernels_cached_apart():
    """Serial and parallel kernels have their own numba cache entries."""
    for name, (serial, parallel) in numba_kernels._KERNELS.items():
        serial_index = serial._cache._cache_file._index_name
        parallel_index = parallel._cache._cache_file._index_name
        assert serial_index != parallel_index, name


@pytest.mark.parametrize("backend", NUMBA_BACKENDS)
def test_out_reused_without_allocation(backend):
    """With out=, a kernel fills the caller's buffer and allocates no array."""
    arrays = make_inputs(backend.family, Size(64, 300), "float64", seed=9)
    out = np.full_like(arrays[0], np.nan)
    backend(*arrays, out=out)  # compiles outside the trace
    out[:] = np.nan

    tracemalloc.start()
    try:
        result = backend(*arrays, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    expected = impls.reference(backend.family)(*arrays)
    assert result is out
    assert np.abs(out - expected).max() <= TOLERANCE["float64"] * np.abs(expected).max()
    assert peak < out.nbytes // 10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logits_exp_matches_libm_kernel(dtype):
    """The vectorized-exp kernel agrees with the np.exp kernel within tolerance."""
    logits, labels = make_inputs("cce_logits_backward", Size(50, 2000), dtype, seed=1)
    logits = logits * np.linspace(0.1, 40, 50, dtype=dtype)[:, np.newaxis]

    fast = numba_kernels.logits_numba(logits, labels)
    libm = numba_kernels.logits_numba_libm(logits, labels)

    scale = np.abs(libm).max()
    assert np.abs(fast - libm).max() / scale <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logits_row_max_with_negatives(dtype):
    """The integer-ordered row max handles all-negative rows, -0.0 and -inf."""
    logits = np.array(
        [
            [-5.0, -3.0, -700.0, -4.0],
            [-0.0, 0.0, -1.0, -np.inf],
            [-1e30, -2e30, -3.0, -9],
        ],
        dtype=dtype,
    )
    labels = np.array([1, 0, 2])

    result = numba_kernels.logits_numba(logits, labels)

    expected = impls.reference("cce_logits_backward")(logits, labels)
    assert np.abs(result - expected).max() <= TOLERANCE[dtype]


def test_checked_labels_fast_path():
    """Valid int64 indices pass unchanged; other labels get labels_for's result."""
    scores = np.zeros((4, 5))
    indices = np.array([0, 4, 2, 1])

    assert numba_kernels._checked_labels(indices, scores, "probs") is indices
    converted = numba_kernels._checked_labels(indices.astype(np.int32), scores, "probs")
    assert converted.dtype == np.int64
    assert np.array_equal(converted, indices)


@pytest.mark.parametrize("bad", [[0, 5, 1, 1], [0, -1, 1, 1], [0, 1, 1]])
def test_checked_labels_errors_match(bad):
    """Invalid indices raise labels_for's own error message."""
    scores = np.zeros((4, 5))
    labels = np.array(bad, dtype=np.int64)

    with pytest.raises(impls.InputError) as fast:
        numba_kernels._checked_labels(labels, scores, "logits")
    with pytest.raises(impls.InputError) as shared:
        impls._checks.labels_for(labels, scores, "logits")

    assert str(fast.value) == str(shared.value)
