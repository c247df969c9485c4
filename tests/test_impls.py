"""Every backend against the float64 reference, the input checks they share, `out=`
and the registry.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import impls
from softgrad.cases import TOLERANCE
from softgrad.grid import ALL_DTYPES, Size, make_inputs, make_logits, softmax64

DTYPES = ("float32", "float64")
SHAPES = (Size(1, 7), Size(6, 1), Size(5, 3), Size(37, 23))
LABELLED = ("cce_softmax_backward", "cce_logits_backward")


def _labels_kinds(family):
    return ("index", "one_hot") if family in LABELLED else ("none",)


BACKENDS = [pytest.param(b, id=b.key) for b in impls.backends()]
BACKENDS_WITH_LABELS = [
    pytest.param(b, kind, id=f"{b.key}-{kind}")
    for b in impls.backends()
    for kind in _labels_kinds(b.family)
]
LABELLED_BACKENDS = [p for p in BACKENDS if p.values[0].family in LABELLED]


def require(backend):
    """Skip the test, with the backend's reason, when it cannot run here."""
    if not backend.available:
        pytest.skip(f"{backend.key} is unavailable: {backend.reason}")


def inputs(family, size, dtype="float64", kind="index", seed=7):
    return make_inputs(family, size, dtype, seed=seed, one_hot=kind == "one_hot")


def relative_error(result, expected):
    """Return max |result - expected| / max |expected|, or the plain error if 0."""
    error = np.abs(result.astype(np.float64) - expected).max()
    scale = np.abs(expected).max()
    return error / scale if scale > 0 else error


def baseline(family):
    """Return the family's textbook backend, which every other must agree with."""
    (found,) = [b for b in impls.backends(family) if b.baseline]
    return found


# --- agreement with the reference -------------------------------------------------


@pytest.mark.parametrize("size", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "kind"), BACKENDS_WITH_LABELS)
def test_matches_reference(backend, kind, dtype, size):
    """A backend's result is the reference's within the dtype's tolerance."""
    require(backend)
    arrays = inputs(backend.family, size, dtype, kind)

    result = backend(*arrays)
    expected = impls.reference(backend.family)(*arrays)

    assert result.shape == arrays[0].shape
    assert result.dtype == np.dtype(dtype)
    assert relative_error(result, expected) <= TOLERANCE[dtype]


def _scaled_rows(family, dtype, kind):
    """Return inputs whose rows differ in scale by up to 12 orders of magnitude.

    For softmax_backward the upstream rows are scaled from 1e-6 to 1e6. For the
    CCE families the logits get row temperatures from 1e-3 to 4 and, from logits,
    offsets of up to +-800 that overflow exp without the max shift. The
    temperature stops at 4 so that no probability underflows in float32, which
    the textbook path cannot handle at the label class.
    """
    size = Size(13, 40)
    if family == "softmax_backward":
        probs, dvalues = inputs(family, size, "float64")
        dvalues = dvalues * 10.0 ** np.arange(-6, 7)[:, np.newaxis]
        return probs.astype(dtype), dvalues.astype(dtype)
    logits = make_logits(size, "float64", seed=7)
    logits *= np.geomspace(1e-3, 4, size.n)[:, np.newaxis]
    labels = inputs(family, size, dtype, kind)[1]
    if family == "cce_softmax_backward":
        return softmax64(logits).astype(dtype), labels
    logits += np.linspace(-800, 800, size.n)[:, np.newaxis]
    return logits.astype(dtype), labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "kind"), BACKENDS_WITH_LABELS)
def test_rows_of_different_scale(backend, kind, dtype):
    """Rows that differ in scale by orders of magnitude each match the reference."""
    require(backend)
    arrays = _scaled_rows(backend.family, dtype, kind)

    result = backend(*arrays)
    expected = impls.reference(backend.family)(*arrays)

    assert np.isfinite(result).all()
    if backend.family == "softmax_backward":
        # dL/dz is linear in dvalues, so each row must be right on its own scale.
        for row in range(len(result)):
            error = relative_error(result[row : row + 1], expected[row : row + 1])
            assert error <= TOLERANCE[dtype], f"row {row}"
    else:
        assert relative_error(result, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", LABELLED_BACKENDS)
def test_one_hot_equals_index_labels(backend, dtype):
    """One-hot labels give the result of the same labels as class indices."""
    require(backend)
    first, indices = inputs(backend.family, Size(9, 6), dtype, "index")
    one_hot = np.eye(6, dtype=dtype)[indices]

    from_indices = backend(first, indices)
    from_one_hot = backend(first, one_hot)

    expected = impls.reference(backend.family)(first, indices)
    assert relative_error(from_one_hot, expected) <= TOLERANCE[dtype]
    assert relative_error(from_one_hot, from_indices) <= TOLERANCE[dtype]


@pytest.mark.parametrize("layout", ["fortran", "strided"])
@pytest.mark.parametrize(("backend", "kind"), BACKENDS_WITH_LABELS)
def test_non_contiguous_inputs(backend, kind, layout):
    """Fortran-ordered and strided views give the result of contiguous inputs."""
    require(backend)
    arrays = inputs(backend.family, Size(8, 5), "float64", kind)
    if layout == "fortran":
        views = tuple(np.asfortranarray(a) for a in arrays)
    else:
        views = tuple(np.repeat(a, 2, axis=0)[::2] for a in arrays)

    result = backend(*views)

    expected = impls.reference(backend.family)(*arrays)
    assert relative_error(result, expected) <= TOLERANCE["float64"]


@pytest.mark.parametrize("backend", LABELLED_BACKENDS)
def test_underflowed_probability_off_label(backend):
    """A probability of exactly 0 away from the label gives a finite gradient."""
    require(backend)
    logits = np.array([[0.0, 2.0, -900.0, 1.0], [-900.0, 0.5, 0.0, 3.0]])
    labels = np.array([1, 3])
    first = softmax64(logits) if backend.family == "cce_softmax_backward" else logits
    assert (softmax64(logits) == 0).sum() == 2  # the underflow this test is about

    with np.errstate(divide="raise", invalid="raise"):
        result = backend(first, labels)

    expected = impls.reference(backend.family)(first, labels)
    assert np.isfinite(result).all()
    assert relative_error(result, expected) <= TOLERANCE["float64"]


# --- inputs, outputs and NaN ------------------------------------------------------


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize(("backend", "kind"), BACKENDS_WITH_LABELS)
def test_inputs_unchanged(backend, kind, with_out):
    """A call leaves its input arrays exactly as they were."""
    require(backend)
    for dtype in DTYPES:
        arrays = inputs(backend.family, Size(7, 4), dtype, kind)
        copies = tuple(a.copy() for a in arrays)
        options = {"out": np.empty_like(arrays[0])} if with_out else {}

        backend(*arrays, **options)

        for name, array, copy in zip(impls.ARGUMENTS[backend.family], arrays, copies):
            assert np.array_equal(array, copy), f"`{name}` changed ({dtype})"


def _nan_cases():
    for b in impls.backends():
        names = impls.ARGUMENTS[b.family]
        arguments = names if b.family == "softmax_backward" else names[:1]
        for argument in arguments:
            for column in (0, 2):
                case_id = f"{b.key}-{argument}-{column}"
                yield pytest.param(b, argument, column, id=case_id)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "argument", "column"), list(_nan_cases()))
def test_nan_stays_in_its_row(backend, argument, column, dtype):
    """A NaN in one row of an input reaches that row's output and no other row."""
    require(backend)
    arrays = list(inputs(backend.family, Size(5, 4), dtype))
    position = impls.ARGUMENTS[backend.family].index(argument)
    arrays[position] = arrays[position].copy()
    arrays[position][2, column] = np.nan

    result = backend(*arrays)

    expected = impls.reference(backend.family)(*arrays)
    others = [0, 1, 3, 4]
    assert np.isnan(result[2]).any()
    assert np.isfinite(result[others]).all()
    assert relative_error(result[others], expected[others]) <= TOLERANCE[dtype]


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "kind"), BACKENDS_WITH_LABELS)
def test_out_receives_result(backend, kind, dtype, layout):
    """`out=` is filled with the result and returned."""
    require(backend)
    arrays = inputs(backend.family, Size(6, 5), dtype, kind)
    out = np.full(arrays[0].shape, 7.0, dtype=dtype, order=layout)

    result = backend(*arrays, out=out)

    expected = impls.reference(backend.family)(*arrays)
    assert result is out
    assert relative_error(out, expected) <= TOLERANCE[dtype]


def _bad_outputs(family, arrays):
    """Yield (fault, out) pairs that every backend of `family` must reject.

    An `out` that is an input itself is allowed by some backends and not by
    others, so tests/test_contract.py checks overlaps against each registry entry.
    """
    first = arrays[0]
    read_only = np.empty_like(first)
    read_only.flags.writeable = False
    yield "shape", np.empty((first.shape[0], first.shape[1] + 1), first.dtype)
    yield "transposed", np.empty(first.shape[::-1], first.dtype)
    yield "dtype", np.empty(first.shape, np.float32)
    yield "read_only", read_only
    yield "list", first.tolist()


OUT_FAULTS = ("shape", "transposed", "dtype", "read_only", "list")


@pytest.mark.parametrize("fault", OUT_FAULTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_out_rejected(backend, fault):
    """A wrong `out` raises the baseline's error, whose message names `out`."""
    require(backend)
    kind = "one_hot" if backend.family in LABELLED else "none"
    arrays = inputs(backend.family, Size(4, 5), "float64", kind)
    bad = dict(_bad_outputs(backend.family, arrays))

    with pytest.raises(impls.InputError) as raised:
        backend(*arrays, out=bad[fault])
    with pytest.raises(impls.InputError) as expected:
        baseline(backend.family)(*arrays, out=bad[fault])

    assert "`out`" in str(raised.value)
    assert str(raised.value) == str(expected.value)


# --- the errors every backend of a family shares --------------------------------


def _set_label(value):
    """Return a build function that puts `value` into the third label."""

    def build(first, labels):
        labels = labels.copy()
        labels[2] = value
        return first, labels

    return build


def _error_cases(family):
    """Return (fault, build, fragments): `build` turns valid arguments into bad ones.

    The valid arguments have shape (4, 5) with index labels, and each message
    must contain every fragment: the argument in backticks and the bad value.
    """
    first = f"`{impls.ARGUMENTS[family][0]}`"
    shared = [
        ("first_1d", lambda a, b: (a[0], b), (first, "(5,)")),
        ("first_3d", lambda a, b: (a[np.newaxis], b), (first, "(1, 4, 5)")),
        ("float16", lambda a, b: (a.astype(np.float16), b), (first, "float16")),
        ("int", lambda a, b: (a.astype(np.int64), b), (first, "int64")),
        ("empty_batch", lambda a, b: (a[:0], b[:0]), (first, "(0, 5)")),
    ]
    if family == "softmax_backward":
        return shared + [
            ("no_classes", lambda a, b: (a[:, :0], b[:, :0]), (first, "(4, 0)")),
            ("dvalues_shape", lambda a, b: (a, b[:, :4]), ("`dvalues`", "(4, 4)")),
            ("dvalues_rows", lambda a, b: (a, b[:3]), ("`dvalues`", "(3, 5)")),
            ("dvalues_1d", lambda a, b: (a, b[0]), ("`dvalues`", "(5,)")),
            (
                "dvalues_dtype",
                lambda a, b: (a, b.astype(np.float32)),
                ("`dvalues`", "float32"),
            ),
        ]
    labels = "`labels`"
    return shared + [
        ("no_classes", lambda a, b: (a[:, :0], b), (first, "(4, 0)")),
        ("label_negative", _set_label(-1), (labels, "-1")),
        ("label_too_large", _set_label(5), (labels, "5")),
        ("label_far_too_large", _set_label(10**6), (labels, "1000000")),
        ("labels_float", lambda a, b: (a, b.astype(np.float64)), (labels, "float64")),
        ("labels_bool", lambda a, b: (a, b > 1), (labels, "bool")),
        ("labels_short", lambda a, b: (a, b[:3]), (labels, "3")),
        (
            "labels_3d",
            lambda a, b: (a, np.eye(5)[b][np.newaxis]),
            (labels, "(1, 4, 5)"),
        ),
        ("one_hot_shape", lambda a, b: (a, np.eye(4)[b % 4]), (labels, "(4, 4)")),
        ("one_hot_text", lambda a, b: (a, np.eye(5)[b].astype(str)), (labels, "<U32")),
    ]


ERROR_CASES = [
    pytest.param(b, build, fragments, id=f"{b.key}-{fault}")
    for b in impls.backends()
    for fault, build, fragments in _error_cases(b.family)
]
REFERENCE_ERROR_CASES = [
    pytest.param(family, build, fragments, id=f"{family}-{fault}")
    for family in impls.FAMILIES
    for fault, build, fragments in _error_cases(family)
]


def _valid_arguments(family):
    return inputs(family, Size(4, 5), "float64", "index", seed=3)


@pytest.mark.parametrize(("family", "build", "fragments"), REFERENCE_ERROR_CASES)
def test_error_names_argument_and_value(family, build, fragments):
    """The shared checks raise a ValueError naming the argument and its value."""
    arrays = build(*_valid_arguments(family))

    with pytest.raises(ValueError) as raised:
        impls.reference(family)(*arrays)

    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(("backend", "build", "fragments"), ERROR_CASES)
def test_error_same_as_reference(backend, build, fragments):
    """A backend rejects bad input with the reference's exception and message."""
    require(backend)
    arrays = build(*_valid_arguments(backend.family))

    with pytest.raises(ValueError) as expected:
        impls.reference(backend.family)(*arrays)
    with pytest.raises(ValueError) as raised:
        backend(*arrays)

    assert type(raised.value) is type(expected.value)
    assert str(raised.value) == str(expected.value)


# --- the registry -----------------------------------------------------------------


def test_registry_families_known():
    """Every backend belongs to a family in impls.FAMILIES."""
    families = {b.family for b in impls.backends()}
    assert families == set(impls.FAMILIES)


def test_registry_names_unique():
    """No two backends share a (family, name)."""
    keys = [(b.family, b.name) for b in impls.backends()]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_registry_one_baseline(family):
    """Each family has exactly one baseline backend."""
    baselines = [b.name for b in impls.backends(family) if b.baseline]
    assert len(baselines) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_registry_entry_complete(backend):
    """A backend has a description, known dtypes and a positive memory estimate."""
    assert backend.description.strip()
    assert set(backend.dtypes) <= set(ALL_DTYPES)
    assert backend.memory(1, 1, "float32") > 0
    assert backend.key == f"{backend.family}/{backend.name}"


def test_registry_lists_every_family():
    """backends() with no family lists the union of the per-family lists."""
    per_family = [b for family in impls.FAMILIES for b in impls.backends(family)]
    assert impls.backends() == per_family


def test_registry_arguments_cover_families():
    """Every family has its two argument names."""
    assert set(impls.ARGUMENTS) == set(impls.FAMILIES)


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_reference_is_registered(family):
    """impls.reference returns a callable oracle for every family."""
    assert callable(impls.reference(family))


def test_unknown_family_rejected():
    """An unknown family raises an error naming it."""
    with pytest.raises(impls.InputError, match="`softmax_forward`"):
        impls.backends("softmax_forward")
    with pytest.raises(impls.InputError, match="`softmax_forward`"):
        impls.reference("softmax_forward")


def test_unknown_backend_rejected():
    """impls.get raises an error naming the unknown backend and the known ones."""
    with pytest.raises(impls.InputError) as raised:
        impls.get("softmax_backward", "cupy_vjp")

    assert "`cupy_vjp`" in str(raised.value)
    assert "numpy_vjp" in str(raised.value)


def test_unavailable_backend_fails_only_when_called():
    """A backend whose module is missing raises ImportError only when called."""
    backend = impls.Backend(
        "absent",
        "softmax_backward",
        "a backend whose module is not installed",
        "softgrad_no_such_module:softmax_backward",
        requires="softgrad-no-such-package",
    )
    probs, dvalues = inputs("softmax_backward", Size(2, 3))

    assert backend.memory(2, 3, "float64") > 0
    assert backend.available is False
    assert "softgrad-no-such-package is not installed" in backend.reason
    with pytest.raises(ImportError) as raised:
        backend(probs, dvalues)
    assert "softmax_backward/absent" in str(raised.value)
    assert backend.reason in str(raised.value)


JACOBIAN_BACKENDS = [p for p in BACKENDS if p.values[0].jacobian]
# L x L temporaries of 512 KiB and more dominate the peak at these sizes.
MEMORY_SIZES = (Size(8, 256), Size(16, 256), Size(4, 512))


def _traced_peak(backend, size):
    """Return the peak bytes numpy allocates during one float64 call."""
    arrays = inputs(backend.family, size)
    backend(*arrays)  # load the module outside the trace
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        backend(*arrays)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("backend", JACOBIAN_BACKENDS)
def test_jacobian_memory_estimate_tracks_peak(backend):
    """A Jacobian backend's estimate is within 5% below to 60% above the traced peak."""
    require(backend)
    for size in MEMORY_SIZES:
        peak = _traced_peak(backend, size)
        estimate = backend.memory(size.n, size.classes, "float64")
        assert 0.95 * peak <= estimate <= 1.6 * peak, f"{size}: {estimate} vs {peak}"


@pytest.mark.parametrize("backend", JACOBIAN_BACKENDS)
def test_jacobian_memory_estimate_growth(backend):
    """The estimate grows with N and L as the traced peak does."""
    require(backend)
    small, double_n = MEMORY_SIZES[0], MEMORY_SIZES[1]
    peak_ratio = _traced_peak(backend, double_n) / _traced_peak(backend, small)
    estimate_ratio = backend.memory(16, 256, "float64") / backend.memory(
        8, 256, "float64"
    )

    assert estimate_ratio == pytest.approx(peak_ratio, rel=0.05)
    # At least one L x L Jacobian, in any case.
    assert backend.memory(1, 10_000, "float32") >= 10_000**2 * 4


def test_batched_jacobian_memory_is_n_l_squared():
    """A batched Jacobian's estimate counts all N Jacobians: N * L * L elements."""
    batched = [
        b
        for b in impls.backends("softmax_backward")
        if b.jacobian
        and b.memory(64, 1000, "float64") > 2 * b.memory(1, 1000, "float64")
    ]
    assert batched, "expected at least one batched Jacobian backend"
    for backend in batched:
        n, classes = 4096, 4096
        estimate = backend.memory(n, classes, "float64")
        assert estimate >= n * classes * classes * 8
        assert estimate <= 1.01 * n * classes * classes * 8
