"""The contract of every registered backend, on inputs drawn by hypothesis.

Each backend of a family gets the same drawn inputs as the family's float64
reference and must return its values row by row, leave its inputs unchanged,
honour `out=` and reject what the reference rejects with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import impls
from impls.reference import softmax as reference_softmax
from softgrad.cases import TOLERANCE

FLOAT_DTYPES = ("float32", "float64")
LAYOUTS = ("C", "F", "strided", "reversed")
LABELLED = ("cce_softmax_backward", "cce_logits_backward")

# Row kinds of the logits that inputs are made from. "all_masked" is a row of
# -inf only, whose softmax is 0 / 0: the reference and every backend return a
# NaN row for it. It is drawn only for logits, since its probabilities are not
# a distribution.
ROW_KINDS = ("plain", "scaled", "offset", "masked", "one_hot")
LOGIT_ROW_KINDS = ROW_KINDS + ("all_masked",)

# Largest power of ten drawn for a row's scale or offset: the values must stay
# finite in the dtype.
MAX_EXPONENT = {"float32": 30, "float64": 300}

CONTRACT = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=impls.backends(), ids=lambda b: b.key)
def backend(request):
    """Every registered backend, skipped with its reason when it cannot run here."""
    backend = request.param
    if not backend.available:
        pytest.skip(f"{backend.key} is unavailable: {backend.reason}")
    return backend


@pytest.fixture(params=FLOAT_DTYPES)
def dtype(request, backend):
    """Each floating-point dtype, skipped for a backend that does not take it."""
    if request.param not in backend.dtypes:
        pytest.skip(f"{backend.key} does not take {request.param}")
    return request.param


@dataclass
class Drawn:
    """A family's arguments, drawn, and what the checks need to know about them."""

    arrays: tuple  # the arguments, in the drawn layout
    labels: np.ndarray | None  # each row's class, for the labelled families
    dtype: str
    layout: str


# --- drawing inputs ---------------------------------------------------------------


def _row_logits(rng, kind, classes, exponent):
    row = 3.0 * rng.standard_normal(classes)
    if kind == "scaled":
        row *= 10.0**exponent
    elif kind == "offset":
        row += np.sign(exponent or 1) * 10.0 ** abs(exponent)
    elif kind == "masked" and classes > 1:
        masked = rng.permutation(classes)[: rng.integers(1, classes)]
        row[masked] = -np.inf
    elif kind == "one_hot":
        keep = rng.integers(classes)
        row[:] = -np.inf
        row[keep] = 0.0
    elif kind == "all_masked":
        row[:] = -np.inf
    return row


def _softmax64(logits):
    with np.errstate(invalid="ignore"):
        return reference_softmax(logits).astype(np.float64)


def arrange(array: np.ndarray, layout: str) -> np.ndarray:
    """Return a copy of `array` with the same values in `layout`."""
    if layout == "C":
        return np.ascontiguousarray(array)
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        wide = np.repeat(array, 2, axis=0)
        if array.ndim == 2:
            return np.repeat(wide, 2, axis=1)[::2, ::2]
        return wide[::2]
    if layout == "reversed":
        return np.ascontiguousarray(array[::-1])[::-1]
    raise AssertionError(f"unknown layout {layout}")


@st.composite
def drawn_inputs(draw, family, dtypes, label_kinds=("index", "one_hot")):
    """Draw a family's arguments: shapes from 1 x 1, rows of many kinds and scales."""
    dtype = draw(st.sampled_from(dtypes))
    n = draw(st.integers(1, 6))
    classes = draw(st.integers(1, 9))
    kinds = LOGIT_ROW_KINDS if family == "cce_logits_backward" else ROW_KINDS
    top = MAX_EXPONENT[dtype]
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(kinds), st.integers(-top, top)),
            min_size=n,
            max_size=n,
        )
    )
    layout = draw(st.sampled_from(LAYOUTS))
    read_only = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    logits = np.array([_row_logits(rng, k, classes, e) for k, e in rows])
    labels = None
    if family == "softmax_backward":
        scales = 10.0 ** np.array([e for _, e in rows], dtype=np.float64)
        dvalues = rng.standard_normal((n, classes)) * scales[:, np.newaxis]
        if draw(st.booleans()):
            dvalues[rng.integers(n)] = 0.0
        arrays = (_softmax64(logits).astype(dtype), dvalues.astype(dtype))
    else:
        labels = rng.integers(0, classes, size=n)
        first = logits if family == "cce_logits_backward" else _softmax64(logits)
        second = labels
        if draw(st.sampled_from(label_kinds)) == "one_hot":
            label_dtype = draw(st.sampled_from((dtype, "int64", "bool")))
            second = np.eye(classes, dtype=label_dtype)[labels]
        arrays = (first.astype(dtype), second)

    arrays = tuple(arrange(a, layout) for a in arrays)
    if read_only:
        for array in arrays:
            array.flags.writeable = False
    return Drawn(arrays, labels, dtype, layout)


def dtypes_of(backend) -> list[str]:
    return [d for d in FLOAT_DTYPES if d in backend.dtypes]


# --- comparing with the reference -------------------------------------------------


def row_scales(family: str, drawn: Drawn) -> np.ndarray:
    """Return each row's error scale: what rounding errors of that row grow with.

    For softmax_backward it is max_k s_k (|d_k| + sum_j s_j |d_j|), the size of
    the terms a row's result is summed from, so a row whose result cancels to
    nearly 0 is not held to a relative error it cannot reach. For the CCE
    families it is max_k (s_k + y_k) / N.
    """
    first, second = (np.asarray(a) for a in drawn.arrays)
    if family == "softmax_backward":
        s, d = first.astype(np.float64), np.abs(second.astype(np.float64))
        row_dot = (s * d).sum(axis=1, keepdims=True)
        return (s * (d + row_dot)).max(axis=1)
    s = _softmax64(first) if family == "cce_logits_backward" else first
    targets = np.zeros(first.shape)
    targets[np.arange(len(first)), drawn.labels] = 1.0
    return (s.astype(np.float64) + targets).max(axis=1) / len(first)


def label_probabilities(family: str, drawn: Drawn) -> np.ndarray:
    """Return each row's probability at its label class, in float64."""
    first = np.asarray(drawn.arrays[0])
    s = _softmax64(first) if family == "cce_logits_backward" else first
    return s.astype(np.float64)[np.arange(len(first)), drawn.labels]


def check_against_reference(backend, drawn: Drawn, result: np.ndarray) -> None:
    """Assert that `result` is the reference's, row by row, within the tolerance."""
    family = backend.family
    with np.errstate(all="ignore"):
        expected = impls.reference(family)(*drawn.arrays)
    assert result.shape == expected.shape
    assert result.dtype == np.dtype(drawn.dtype)

    finfo = np.finfo(drawn.dtype)
    # Results below the smallest normal number carry an absolute rounding error.
    allowed = TOLERANCE[drawn.dtype] * row_scales(family, drawn) + finfo.tiny
    label_p = None
    if backend.divides_by_probs:
        label_p = label_probabilities(family, drawn)
    for row in range(len(result)):
        got, want = result[row].astype(np.float64), expected[row]
        if np.isnan(want).any():
            assert np.isnan(got).all(), f"row {row}: {got}, expected a NaN row"
            continue
        unsafe = label_p is not None and label_p[row] < 16 / finfo.max
        if unsafe and label_p[row] == 0:
            # -y / s at the label class is -inf, hence the registry's divides_by_probs.
            assert not np.isfinite(got).any(), f"row {row}: {got}, expected no number"
            continue
        if unsafe and not np.isfinite(got).any():
            continue  # 1 / s at the label overflowed, so the row has only inf and NaN
        error = np.abs(got - want).max()
        assert error <= allowed[row], (
            f"row {row}: {got} vs {want}, error {error:.3g} > {allowed[row]:.3g}"
        )


def copies_of(arrays) -> list[np.ndarray]:
    return [np.array(a, copy=True) for a in arrays]


def assert_unchanged(family, arrays, copies, skip=()) -> None:
    for name, array, copy in zip(impls.ARGUMENTS[family], arrays, copies):
        if name not in skip:
            assert np.array_equal(array, copy, equal_nan=True), f"`{name}` changed"


# --- the contract -----------------------------------------------------------------


@CONTRACT
@given(data=st.data())
def test_values_match_reference(backend, dtype, data):
    """Drawn inputs give the reference's values, row by row, and stay unchanged."""
    drawn = data.draw(drawn_inputs(backend.family, [dtype]))
    copies = copies_of(drawn.arrays)

    with np.errstate(all="ignore"):
        result = backend(*drawn.arrays)

    assert_unchanged(backend.family, drawn.arrays, copies)
    check_against_reference(backend, drawn, result)


@CONTRACT
@given(data=st.data(), layout=st.sampled_from(("C", "F", "strided")))
def test_out_receives_values(backend, dtype, data, layout):
    """`out=` in any layout is returned, holding the reference's values."""
    drawn = data.draw(drawn_inputs(backend.family, [dtype]))
    copies = copies_of(drawn.arrays)
    out = arrange(np.full(drawn.arrays[0].shape, 7.0, drawn.dtype), layout)

    with np.errstate(all="ignore"):
        result = backend(*drawn.arrays, out=out)

    assert result is out
    assert_unchanged(backend.family, drawn.arrays, copies)
    check_against_reference(backend, drawn, out)


def _float_arguments(backend, drawn: Drawn) -> list[str]:
    """Name the arguments that an `out` of the result's shape and dtype could be."""
    names = impls.ARGUMENTS[backend.family]
    return [
        name
        for name, array in zip(names, drawn.arrays)
        if array.shape == drawn.arrays[0].shape and array.dtype == drawn.dtype
    ]


@CONTRACT
@given(data=st.data())
def test_out_aliasing_an_input(backend, dtype, data):
    """`out` may be an input the registry lists in out_may_alias, and no other."""
    drawn = data.draw(drawn_inputs(backend.family, [dtype], label_kinds=("one_hot",)))
    names = _float_arguments(backend, drawn)
    name = data.draw(st.sampled_from(names))
    position = impls.ARGUMENTS[backend.family].index(name)
    arrays = list(drawn.arrays)
    # A writeable copy in the drawn layout, even when the inputs are read-only.
    arrays[position] = out = arrange(np.array(arrays[position]), drawn.layout)
    copies = copies_of(arrays)

    if name not in backend.out_may_alias:
        with pytest.raises(impls.InputError, match=f"`out` overlaps `{name}`"):
            backend(*arrays, out=out)
        assert_unchanged(backend.family, arrays, copies)
        return

    with np.errstate(all="ignore"):
        result = backend(*arrays, out=out)

    assert result is out
    assert_unchanged(backend.family, arrays, copies, skip=(name,))
    pristine = Drawn(tuple(copies), drawn.labels, drawn.dtype, drawn.layout)
    check_against_reference(backend, pristine, out)


@CONTRACT
@given(data=st.data())
def test_out_overlapping_part_of_input(backend, data):
    """An `out` that is another view of an input's memory is rejected, naming both."""
    drawn = data.draw(
        drawn_inputs(backend.family, dtypes_of(backend), label_kinds=("one_hot",))
    )
    name = data.draw(st.sampled_from(_float_arguments(backend, drawn)))
    position = impls.ARGUMENTS[backend.family].index(name)
    arrays = list(drawn.arrays)
    n = len(arrays[position])
    if n > 1 and data.draw(st.booleans()):
        storage = np.concatenate([arrays[position], arrays[position][:1]])
        arrays[position], out = storage[:n], storage[1:]  # shifted by one row
    else:
        arrays[position] = np.array(arrays[position])
        out = arrays[position][::-1]
    copies = copies_of(arrays)

    with pytest.raises(impls.InputError, match=f"`out` overlaps `{name}`"):
        backend(*arrays, out=out)

    assert_unchanged(backend.family, arrays, copies)


def test_out_may_alias_names_arguments(backend):
    """out_may_alias lists only argument names of the backend's family."""
    assert set(backend.out_may_alias) <= set(impls.ARGUMENTS[backend.family])


# --- rejected dtypes --------------------------------------------------------------

BAD_DTYPES = ("float16", "int32", "complex64", "bool")


@CONTRACT
@given(data=st.data(), bad_dtype=st.sampled_from(BAD_DTYPES))
def test_bad_dtype_rejected_like_reference(backend, data, bad_dtype):
    """float16 and other dtypes are rejected with the reference's error and message."""
    if bad_dtype in backend.dtypes:
        pytest.skip(f"{backend.key} supports {bad_dtype}; its own tests check it")
    drawn = data.draw(drawn_inputs(backend.family, dtypes_of(backend)))
    arrays = list(drawn.arrays)
    positions = [0, 1] if backend.family == "softmax_backward" else [0]
    position = data.draw(st.sampled_from(positions))
    with np.errstate(invalid="ignore", over="ignore"):  # -inf and 1e300 as int, float16
        arrays[position] = arrays[position].astype(bad_dtype)

    with pytest.raises(ValueError) as expected:
        impls.reference(backend.family)(*arrays)
    with pytest.raises(ValueError) as raised:
        backend(*arrays)

    assert type(raised.value) is type(expected.value)
    assert str(raised.value) == str(expected.value)
    assert bad_dtype in str(raised.value)
