"""Sweep planning, the memory and time guards, and the reference check before timing."""

from __future__ import annotations

import re
import sys
import time
import tracemalloc
import types

import numpy as np
import pytest

import impls
from softgrad.cases import (
    DEFAULT_TIME_BUDGET_S,
    PROBE_ROWS,
    TOLERANCE,
    VARIANTS,
    Case,
    MismatchError,
    Skip,
    SoftgradError,
    check_static,
    format_bytes,
    host_memory_need,
    memory_need,
    plan,
    prepare,
    reference_check_memory,
    relative_error,
    validate_inputs,
    variant_options,
)
from softgrad.grid import DTYPES, GRIDS, Size, make_inputs

GIB = 2**30


@pytest.fixture
def fake_backend(monkeypatch):
    """Return a function that makes a test backend visible to impls.get only.

    The backend's function lives in a module placed in sys.modules for the
    test, so the registry itself is never changed.
    """
    module = types.ModuleType("softgrad_test_doubles")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    doubles = {}
    real_get = impls.get

    def get(family, name):
        if (family, name) in doubles:
            return doubles[(family, name)]
        return real_get(family, name)

    monkeypatch.setattr(impls, "get", get)

    def add(name, function=None, family="softmax_backward", target=None, **details):
        if target is None:
            setattr(module, name, function)
            target = f"{module.__name__}:{name}"
        backend = impls.Backend(name, family, f"test double {name}", target, **details)
        doubles[(family, name)] = backend
        return backend

    return add


def reference_as(family, dtype, factor=1.0):
    """Return a backend function that gives the reference times `factor`."""

    def function(*arrays, out=None):
        return (impls.reference(family)(*arrays) * factor).astype(dtype)

    return function


# --- plan ------------------------------------------------------------------------


def test_plan_covers_every_backend_size_dtype():
    """The default plan has one case per backend, size of the grid and dtype."""
    cases = plan()

    expected = len(impls.backends()) * len(GRIDS["default"]) * len(DTYPES)
    assert len(cases) == expected
    assert len(set(cases)) == expected


def test_plan_order():
    """Cases come in family, size, dtype, backend order."""
    cases = plan(grid="quick")

    keys = [
        (
            impls.FAMILIES.index(c.family),
            GRIDS["quick"].index(c.size),
            DTYPES.index(c.dtype),
        )
        for c in cases
    ]
    assert keys == sorted(keys)


def test_plan_filters_family():
    """`families` keeps only the cases of those families."""
    cases = plan(families=["cce_logits_backward"])

    assert {c.family for c in cases} == {"cce_logits_backward"}
    assert {c.backend for c in cases} == {
        b.name for b in impls.backends("cce_logits_backward")
    }


def test_plan_filters_backend():
    """`backends` keeps those names, in every family that has them."""
    cases = plan(backends=["numpy_vjp", "composed_looped"])

    assert {(c.family, c.backend) for c in cases} == {
        ("softmax_backward", "numpy_vjp"),
        ("cce_softmax_backward", "composed_looped"),
        ("cce_logits_backward", "composed_looped"),
    }


def test_plan_filters_size_and_dtype():
    """`sizes` replaces the grid and `dtypes` keeps those dtypes."""
    cases = plan(sizes=[Size(2, 3), Size(5, 7)], dtypes=["float32"])

    assert {c.size for c in cases} == {Size(2, 3), Size(5, 7)}
    assert {c.dtype for c in cases} == {"float32"}
    assert len(cases) == 2 * len(impls.backends())


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"families": ["softmax_forward"]}, "`softmax_forward`"),
        ({"backends": ["numpy_vjp", "cupy_vjp"]}, "`cupy_vjp`"),
        ({"dtypes": ["float8"]}, "`float8`"),
        ({"grid": "huge"}, "`huge`"),
    ],
)
def test_plan_rejects_unknown_names(options, name):
    """An unknown family, backend, dtype or grid raises an error naming it."""
    with pytest.raises((SoftgradError, impls.InputError)) as raised:
        plan(**options)

    assert name in str(raised.value)


# --- the memory guard ------------------------------------------------------------


def _counting_einsum(fake_backend):
    """Register einsum_jacobian behind a wrapper that records each call's shape."""
    real = impls.get("softmax_backward", "einsum_jacobian")
    calls = []

    def counted(*arrays, **options):
        calls.append(arrays[0].shape)
        return real(*arrays, **options)

    fake_backend(
        "counted_einsum", counted, memory_model=real.memory_model, jacobian=True
    )
    return calls


def test_memory_guard_skips_without_calling(fake_backend):
    """A batched Jacobian beyond the limit is skipped with its need, never called."""
    calls = _counting_einsum(fake_backend)
    n = classes = 4096
    case = Case("softmax_backward", "counted_einsum", Size(n, classes), "float64")

    with pytest.raises(Skip) as raised:
        prepare(case, memory_limit=4 * GIB)

    # Two input matrices, the N Jacobians, the product and the output, in float64.
    need_gib = (2 * n * classes + n * classes * classes + 2 * n * classes) * 8 / GIB
    assert f"needs {need_gib:.1f} GiB, limit 4.0 GiB" in str(raised.value)
    assert calls == []


def test_memory_guard_lets_small_case_run(fake_backend):
    """The same backend runs and passes the check when it fits the limit."""
    calls = _counting_einsum(fake_backend)
    case = Case("softmax_backward", "counted_einsum", Size(16, 10), "float64")

    prepared = prepare(case, memory_limit=4 * GIB)

    assert prepared.max_error <= TOLERANCE["float64"]
    assert (16, 10) in calls


def test_memory_need_by_hand():
    """memory_need adds the two inputs to the backend's estimate."""
    case = Case("softmax_backward", "matmul_jacobian", Size(100, 30), "float32")

    inputs = 2 * 100 * 30 * 4
    jacobians = (100 * 30 * 30 + 2 * 100 * 30) * 4
    assert memory_need(case) == inputs + jacobians


def test_host_memory_need_counts_reference_check():
    """A Jacobian-free case needs what the float64 reference check allocates."""
    case = Case("softmax_backward", "numpy_vjp", Size(100, 30), "float32")

    inputs = 2 * 100 * 30 * 4
    longdouble = np.dtype(np.longdouble).itemsize
    # The float32 result, four longdouble arrays and a float64 one, and per row
    # two longdouble values.
    check = 100 * 30 * (4 + 4 * longdouble + 8) + 100 * 2 * longdouble
    assert host_memory_need(case) == inputs + check


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_reference_check_memory_covers_peak(family):
    """The reference check's traced peak stays within its estimate."""
    size = Size(300, 200)
    arrays = make_inputs(family, size, "float64")
    backend = next(b for b in impls.backends(family) if not b.jacobian)
    result = backend(*arrays)

    tracemalloc.start()
    try:
        relative_error(result, impls.reference(family)(*arrays))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    estimate = reference_check_memory(Case(family, backend.name, size, "float64"))
    result_bytes = result.nbytes  # allocated before the trace started
    assert peak <= estimate - result_bytes


def test_memory_limit_of_one_byte_skips_everything():
    """With a one-byte limit no available backend passes the static checks."""
    for case in plan(grid="quick"):
        if not impls.get(case.family, case.backend).available:
            continue  # skipped for its reason before the memory check
        with pytest.raises(Skip, match=r"^needs .*, limit 1\.0 B$"):
            check_static(case, memory_limit=1)


# --- the time budget -------------------------------------------------------------


def test_time_budget_skips_slow_backend(fake_backend):
    """A backend predicted past the budget is skipped before any full-size call."""
    rows_called = []
    reference = reference_as("softmax_backward", "float64")

    def slow(*arrays, out=None):
        rows_called.append(arrays[0].shape[0])
        time.sleep(0.002)
        return reference(*arrays)

    fake_backend("slow", slow)
    case = Case("softmax_backward", "slow", Size(4000, 10), "float64")

    with pytest.raises(Skip) as raised:
        prepare(case, time_budget_s=0.05)

    found = re.fullmatch(
        r"predicted (\d+\.\d+) s per call, time budget 0.05 s", str(raised.value)
    )
    assert found is not None, str(raised.value)
    # At least 2 ms for each probe of PROBE_ROWS rows, scaled to 4000 rows.
    assert float(found.group(1)) >= 0.002 * 4000 / PROBE_ROWS
    assert max(rows_called) <= PROBE_ROWS


def test_time_budget_skips_looped_jacobian():
    """The real looped Jacobian at 200000 rows exceeds a 0.1 ms budget."""
    case = Case("softmax_backward", "looped_jacobian", Size(200_000, 3), "float64")

    with pytest.raises(Skip, match=r"^predicted \d+\.\d+ s per call"):
        prepare(case, time_budget_s=1e-4)


# --- the reference check ---------------------------------------------------------


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_mismatch_names_backend_and_error(fake_backend, family):
    """A result 0.1% off raises MismatchError naming the backend, size and error."""
    fake_backend("perturbed", reference_as(family, "float64", 1.001), family=family)
    case = Case(family, "perturbed", Size(16, 10), "float64")

    with pytest.raises(MismatchError) as raised:
        prepare(case)

    message = str(raised.value)
    assert f"{family}/perturbed" in message
    assert "N=16, L=10" in message
    # Every entry is 1.001 times the reference, so the relative error is 1e-3.
    assert "off by 0.001 " in message


def test_error_within_tolerance_accepted(fake_backend):
    """A float32 result 1e-5 off passes and reports its error."""
    fake_backend("close", reference_as("softmax_backward", "float32", 1 + 1e-5))
    case = Case("softmax_backward", "close", Size(16, 10), "float32")

    prepared = prepare(case)

    assert prepared.max_error == pytest.approx(1e-5, rel=0.05)


def test_nan_result_is_a_mismatch(fake_backend):
    """A NaN result raises MismatchError: NaN is never within tolerance."""
    fake_backend("nan", reference_as("softmax_backward", "float64", np.nan))
    case = Case("softmax_backward", "nan", Size(4, 5), "float64")

    with pytest.raises(MismatchError):
        prepare(case)


@pytest.mark.parametrize("name", ["numpy_vjp", "numba_serial"])
def test_prepare_real_backend(name):
    """A real backend passes, and compile time is measured only for compiled ones."""
    backend = impls.get("softmax_backward", name)
    if not backend.available:
        pytest.skip(f"{backend.key} is unavailable: {backend.reason}")
    case = Case("softmax_backward", name, Size(64, 10), "float32")

    prepared = prepare(case, time_budget_s=DEFAULT_TIME_BUDGET_S)

    assert prepared.max_error <= TOLERANCE["float32"]
    assert (prepared.compile_s is not None) == backend.compiled


def test_unavailable_backend_skipped(fake_backend):
    """A backend whose module is missing is skipped with its reason."""
    fake_backend(
        "absent",
        target="softgrad_no_such_module:run",
        requires="softgrad-no-such-package",
    )
    case = Case("softmax_backward", "absent", Size(2, 3), "float64")

    with pytest.raises(Skip, match="softgrad-no-such-package is not installed"):
        check_static(case, memory_limit=GIB)


def test_unsupported_dtype_skipped(fake_backend):
    """A backend that lists only float64 skips float32 cases, naming both."""
    fake_backend(
        "only64", reference_as("softmax_backward", "float64"), dtypes=("float64",)
    )
    case = Case("softmax_backward", "only64", Size(2, 3), "float32")

    with pytest.raises(Skip, match="float32 is not supported by only64"):
        check_static(case, memory_limit=GIB)


# --- validate_inputs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "position", "value", "name"),
    [
        ("softmax_backward", 0, np.nan, "`probs`"),
        ("softmax_backward", 1, np.inf, "`dvalues`"),
        ("cce_softmax_backward", 0, np.nan, "`probs`"),
        ("cce_logits_backward", 0, -np.inf, "`logits`"),
        ("cce_logits_backward", 0, np.inf, "`logits`"),
    ],
)
def test_validate_rejects_non_finite(family, position, value, name):
    """NaN or infinity in an input raises an error naming the argument."""
    arrays = list(make_inputs(family, Size(4, 5)))
    arrays[position][1, 2] = value

    with pytest.raises(impls.InputError, match=name):
        validate_inputs(family, arrays)


@pytest.mark.parametrize(
    "row",
    [[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2, 0, 0, -1]],
    ids=["two_ones", "soft", "zeros", "sum_one_not_binary"],
)
@pytest.mark.parametrize("family", ["cce_softmax_backward", "cce_logits_backward"])
def test_validate_rejects_bad_one_hot(family, row):
    """A label row that is not one-hot raises an error naming the row."""
    first, labels = make_inputs(family, Size(3, 4), one_hot=True)
    labels[1] = row

    with pytest.raises(impls.InputError) as raised:
        validate_inputs(family, (first, labels))

    assert "`labels`" in str(raised.value)
    assert "row 1" in str(raised.value)


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("family", impls.FAMILIES)
def test_validate_accepts_factory_inputs(family, one_hot):
    """The input factory's arrays pass validation."""
    arrays = make_inputs(family, Size(8, 6), "float32", one_hot=one_hot)

    assert validate_inputs(family, arrays) is None


# --- helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0.0 B"),
        (1023, "1023.0 B"),
        (1024, "1.0 KiB"),
        (3 * 2**19, "1.5 MiB"),
        (512 * GIB, "512.0 GiB"),
        (5 * 2**40, "5.0 TiB"),
        (2**60, f"{2**20:.1f} TiB"),
    ],
)
def test_format_bytes(count, text):
    """format_bytes uses binary units with one decimal."""
    assert format_bytes(count) == text


def test_relative_error_by_hand():
    """relative_error is the max absolute error over the max absolute reference."""
    expected = np.array([[1.0, -4.0], [2.0, 0.5]])
    result = np.array([[1.5, -4.0], [2.0, 0.25]], dtype=np.float32)

    assert relative_error(result, expected) == 0.5 / 4.0


def test_relative_error_of_zero_reference():
    """Against an all-zero reference the error is absolute."""
    assert relative_error(np.array([[0.0, 3e-9]]), np.zeros((1, 2))) == 3e-9


# --- variants ---------------------------------------------------------------


def test_plan_default_variant_keeps_ids():
    """A plan without variants gives the ids and groups of the default cases."""
    cases = plan(families=["cce_softmax_backward"], sizes=[Size(16, 10)])
    case = next(c for c in cases if c.backend == "fused_numpy" and c.dtype == "float64")
    assert (case.id, case.group) == (
        "fused_numpy-16x10-float64",
        "cce_softmax_backward N=16 L=10 float64",
    )


def test_plan_variant_appends_to_id_and_group():
    """A non-default variant is appended to the case's id and group."""
    cases = plan(
        families=["cce_softmax_backward"],
        backends=["fused_numpy"],
        sizes=[Size(16, 10)],
        dtypes=["float64"],
        variants=["default", "peaked", "weight"],
    )
    assert [(c.id, c.group.split()[-1]) for c in cases] == [
        ("fused_numpy-16x10-float64", "float64"),
        ("fused_numpy-16x10-float64-peaked", "peaked"),
        ("fused_numpy-16x10-float64-weight", "weight"),
    ]


def test_plan_options_only_for_cce_families():
    """Variants with cross-entropy options leave softmax_backward out."""
    cases = plan(
        backends=["numpy_vjp", "fused_numpy"],
        sizes=[Size(4, 5)],
        dtypes=["float64"],
        variants=["large", "reduction=sum"],
    )
    assert sorted((c.family, c.variant) for c in cases) == [
        ("cce_softmax_backward", "large"),
        ("cce_softmax_backward", "reduction=sum"),
        ("softmax_backward", "large"),
    ]


def test_plan_rejects_unknown_variant():
    """An unknown variant is named in the error."""
    with pytest.raises(SoftgradError, match="`smooth`"):
        plan(variants=["smooth"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prepare_variant_matches_reference(variant):
    """Each variant of fused_numpy gives the reference's gradient with its options."""
    case = Case("cce_softmax_backward", "fused_numpy", Size(32, 10), "float64", variant)
    prepared = prepare(case, time_budget_s=10.0)
    options = variant_options(case)
    function, arguments = prepared.timed_call()
    distribution = VARIANTS[variant][0]
    probs, labels = make_inputs(
        "cce_softmax_backward", case.size, distribution=distribution
    )
    expected = impls.reference("cce_softmax_backward")(probs, labels, **options)
    np.testing.assert_allclose(function(*arguments), expected, rtol=0, atol=1e-15)


def test_prepare_option_variant_differs_from_default():
    """label_smoothing=0.1 changes the gradient, so the options reach the backend."""
    size = Size(8, 10)
    default = Case("cce_logits_backward", "logits_numpy", size, "float64")
    smoothed = Case(
        "cce_logits_backward", "logits_numpy", size, "float64", "label_smoothing=0.1"
    )
    results = []
    for case in (default, smoothed):
        function, arguments = prepare(case, time_budget_s=10.0).timed_call()
        results.append(function(*arguments))
    assert np.abs(results[0] - results[1]).max() > 1e-3


def test_prepare_large_skips_composed_backend():
    """A backend that divides by probabilities is skipped on the large variant."""
    case = Case("cce_softmax_backward", "composed_vjp", Size(8, 10), "float64", "large")
    with pytest.raises(Skip, match="underflow"):
        prepare(case)
