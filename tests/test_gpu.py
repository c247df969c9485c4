"""GPU backends: registry, unavailable reasons, host checks, 16-bit tolerances, values.

Value tests need a CUDA device and are skipped, with that reason, elsewhere;
everything else runs on any machine.
"""

from __future__ import annotations

import importlib.util
import re
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import impls
from impls._checks import InputError, device_inputs
from impls.cuda_kernels import (
    BLOCKS_PER_MULTIPROCESSOR,
    MIN_CHUNK,
    SOURCE,
    bfloat16_to_float32,
    kernel_names,
    launch_shape,
)
from softgrad import cases
from softgrad.grid import ALL_DTYPES, DTYPES, Size, make_inputs, numpy_dtype

GPU_BACKENDS = [backend for backend in impls.backends() if backend.device == "gpu"]
UNAVAILABLE = [backend for backend in GPU_BACKENDS if not backend.available]

# The CPU backend whose error messages the host checks of each family must repeat.
CPU_PEER = {
    "softmax_backward": "numpy_vjp",
    "cce_softmax_backward": "fused_numpy",
    "cce_logits_backward": "logits_numpy",
}


def _key(backend) -> str:
    return backend.key


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _needs_device(backend):
    return pytest.mark.skipif(
        not backend.available, reason=f"needs a CUDA device ({backend.reason})"
    )


# Registry


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_every_family_has_cupy_kernel(family):
    """Each family lists a CuPy kernel backend that computes on the GPU."""
    backend = impls.get(family, "cupy_kernel")

    assert backend.device == "gpu"
    assert backend.requires == "cupy"
    assert set(backend.dtypes) == set(ALL_DTYPES)


@pytest.mark.parametrize("family", ["softmax_backward", "cce_logits_backward"])
def test_torch_cuda_registered(family):
    """PyTorch CUDA is a GPU peer of the softmax and the from-logits families."""
    backend = impls.get(family, "torch_cuda")

    assert backend.device == "gpu"
    assert backend.requires == "torch"


def test_gpu_jacobian_memory_grows_with_l_squared():
    """The GPU Jacobian's memory estimate covers the (N, L, L) array it builds."""
    backend = impls.get("softmax_backward", "cupy_matmul_jacobian")
    n, classes = 256, 50257

    assert backend.jacobian
    assert backend.memory(n, classes, "float32") >= n * classes * classes * 4


def test_cpu_backends_stay_on_cpu():
    """Every backend that is not a GPU backend computes on the CPU."""
    devices = {backend.device for backend in impls.backends()}

    assert devices == {"cpu", "gpu"}


def test_itemsize_of_bfloat16():
    """impls.itemsize returns 2 bytes for bfloat16, as ml_dtypes does."""
    assert impls.itemsize("bfloat16") == np.dtype(ml_dtypes.bfloat16).itemsize
    assert impls.itemsize("float16") == 2
    assert impls.itemsize("float64") == 8


# Unavailable backends


def _expected_causes(backend) -> tuple[str, ...]:
    if not _installed(backend.requires):
        return (f"{backend.requires} is not installed",)
    return ("no CUDA device found", "NVRTC", "build without CUDA")


@pytest.mark.parametrize("backend", UNAVAILABLE, ids=_key)
def test_unavailable_reason_names_cause(backend):
    """An unavailable GPU backend names the missing package, device or compiler."""
    causes = _expected_causes(backend)

    assert any(cause in backend.reason for cause in causes), backend.reason


@pytest.mark.parametrize("backend", UNAVAILABLE, ids=_key)
def test_unavailable_call_raises_import_error(backend):
    """Calling an unavailable GPU backend raises ImportError with its reason."""
    arrays = make_inputs(backend.family, Size(2, 3), "float32")

    with pytest.raises(ImportError, match=re.escape(backend.reason)):
        backend(*arrays)


@pytest.mark.parametrize("backend", UNAVAILABLE, ids=_key)
def test_unavailable_convert_raises_import_error(backend):
    """Moving data to an unavailable GPU backend raises ImportError too."""
    arrays = make_inputs(backend.family, Size(2, 3), "float32")

    with pytest.raises(ImportError, match=re.escape(backend.reason)):
        backend.convert(*arrays)
    with pytest.raises(ImportError, match=re.escape(backend.reason)):
        backend.memory_available()


@pytest.mark.parametrize("backend", UNAVAILABLE, ids=_key)
def test_unavailable_case_skipped_with_reason(backend):
    """The sweep skips an unavailable GPU backend with its reason, timing nothing."""
    case = cases.Case(backend.family, backend.name, Size(4, 5), "float32")

    with pytest.raises(cases.Skip, match=re.escape(backend.reason)):
        cases.check_static(case, memory_limit=2**30)


@pytest.mark.skipif(
    len(UNAVAILABLE) < len(GPU_BACKENDS), reason="a GPU backend is available here"
)
def test_gpu_backends_listed_without_device():
    """Without a usable device every GPU backend is listed, and none is available."""
    names = {backend.key for backend in GPU_BACKENDS}

    assert names == {backend.key for backend in UNAVAILABLE}
    assert "softmax_backward/cupy_kernel" in names
    assert "cce_logits_backward/torch_cuda" in names


# Host-side input checks


def _bad_inputs(family: str) -> dict[str, tuple]:
    """Invalid (first, second) arguments of `family`, by what is wrong."""
    scores, labels = make_inputs(family, Size(3, 4), "float32")
    cases_ = {
        "1-D scores": (scores[0], labels),
        "integer scores": (scores.astype(np.int32), labels),
        "no rows": (scores[:0], labels[:0]),
        "no classes": (scores[:, :0], labels),
    }
    if family == "softmax_backward":
        cases_ |= {
            "shape mismatch": (scores, labels[:2]),
            "dtype mismatch": (scores, labels.astype(np.float64)),
        }
        return cases_
    return cases_ | {
        "float indices": (scores, labels.astype(np.float32)),
        "too few labels": (scores, labels[:2]),
        "index too high": (scores, np.array([0, 1, 4])),
        "negative index": (scores, np.array([0, -1, 2])),
        "one-hot shape": (scores, np.zeros((3, 5), dtype=np.float32)),
        "one-hot strings": (scores, np.full((3, 4), "a")),
        "3-D labels": (scores, np.zeros((3, 4, 1))),
    }


HOST_CASES = [
    pytest.param(family, problem, id=f"{family}-{problem}")
    for family in impls.FAMILIES
    for problem in _bad_inputs(family)
]


def _message(call, *arguments) -> str:
    with pytest.raises(InputError) as raised:
        call(*arguments)
    return str(raised.value)


def _cpu_message(family: str, first, second) -> str:
    """Return the CPU backend's message, with the dtypes a GPU backend accepts."""
    message = _message(impls.get(family, CPU_PEER[family]), first, second)
    # GPU backends take no loss options, so -100 is not an ignored label there.
    message = message.removesuffix(", or equal to `ignore_index` (-100)")
    return message.replace(
        "dtype float32 or float64,", "dtype float32, float64, float16 or bfloat16,"
    )


@pytest.mark.parametrize(("family", "problem"), HOST_CASES)
def test_host_checks_match_cpu_backends(family, problem):
    """GPU host checks raise the CPU backends' InputError, message for message."""
    first, second = _bad_inputs(family)[problem]

    expected = _cpu_message(family, first, second)

    assert _message(device_inputs, family, first, second) == expected


@pytest.mark.skipif(not _installed("cupy"), reason="needs cupy installed")
@pytest.mark.parametrize(("family", "problem"), HOST_CASES)
def test_cupy_adapter_rejects_before_copying(family, problem):
    """The CuPy adapter raises the same InputError before touching any device."""
    from impls import gpu

    first, second = _bad_inputs(family)[problem]
    expected = _cpu_message(family, first, second)

    assert _message(gpu.CupyAdapter(family).convert, (first, second)) == expected


@pytest.mark.parametrize("family", impls.FAMILIES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_host_checks_accept_16_bit(family, dtype):
    """GPU host checks accept float16 and bfloat16 and keep their dtype."""
    first, second = make_inputs(family, Size(3, 4), dtype)

    checked_first, checked_second = device_inputs(family, first, second)

    assert str(checked_first.dtype) == dtype
    assert np.array_equal(checked_first.astype(np.float64), first.astype(np.float64))
    if family == "softmax_backward":
        assert str(checked_second.dtype) == dtype


@pytest.mark.parametrize("family", impls.FAMILIES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cpu_backends_reject_16_bit(family, dtype):
    """CPU backends keep rejecting 16-bit input with an InputError naming it."""
    arrays = make_inputs(family, Size(3, 4), dtype)
    cpu_backends = [
        b for b in impls.backends(family) if b.device == "cpu" and b.available
    ]

    for backend in cpu_backends:
        message = _message(backend, *arrays)
        assert message.endswith(f"must have dtype float32 or float64, got {dtype}")


@pytest.mark.parametrize("family", ["cce_softmax_backward", "cce_logits_backward"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_host_checks_convert_labels(family, dtype):
    """Class indices become int64 and one-hot rows take the scores' dtype."""
    scores, indices = make_inputs(family, Size(3, 4), dtype)
    one_hot = np.zeros((3, 4))
    one_hot[np.arange(3), indices] = 1

    _, checked_indices = device_inputs(family, scores, indices.astype(np.int32))
    _, checked_rows = device_inputs(family, scores, one_hot)

    assert checked_indices.dtype == np.int64
    assert str(checked_rows.dtype) == dtype
    assert np.array_equal(checked_rows.astype(np.float64), one_hot)


# Launch geometry and bfloat16 storage, both used by the kernels


def test_launch_splits_long_rows_few_rows():
    """At 64 x 128256 rows are split over blocks to fill an H200's 132 SMs."""
    threads, pieces, _ = launch_shape(64, 128256, 132)

    assert threads == 256
    assert pieces > 1
    assert 64 * pieces >= BLOCKS_PER_MULTIPROCESSOR * 132


def test_launch_keeps_rows_whole_many_rows():
    """At 4096 x 1000 each block owns one whole row."""
    assert launch_shape(4096, 1000, 132) == (256, 1, 1000)


@given(
    rows=st.integers(1, 10**6),
    classes=st.integers(1, 10**6),
    multiprocessors=st.integers(1, 1024),
)
def test_launch_shape_covers_each_row(rows, classes, multiprocessors):
    """Blocks cover every column once, with a warp multiple of threads."""
    threads, pieces, chunk = launch_shape(rows, classes, multiprocessors)

    assert threads % 32 == 0
    assert 32 <= threads <= 1024
    assert (pieces - 1) * chunk < classes <= pieces * chunk
    assert pieces == 1 or chunk >= MIN_CHUNK
    assert pieces == 1 or rows < BLOCKS_PER_MULTIPROCESSOR * multiprocessors
    # The GPU memory model assumes fewer than 2 N + 4096 blocks.
    assert rows * pieces < 2 * rows + 4096


def test_bfloat16_bits_convert_exactly():
    """Every bfloat16 bit pattern converts to the float32 ml_dtypes gives."""
    bits = np.arange(2**16, dtype=np.uint16)
    expected = bits.view(ml_dtypes.bfloat16).astype(np.float32)

    result = bfloat16_to_float32(bits)

    assert result.dtype == np.float32
    assert np.array_equal(result, expected, equal_nan=True)


def test_kernel_names_cover_every_storage_type():
    """One compile holds every kernel instance the backends launch, per dtype."""
    names = kernel_names()

    assert len(names) == len(set(names)) == 4 * 10
    for storage in ("float", "double", "float16_bits", "bfloat16_bits"):
        assert f"vjp_rows<{storage}>" in names


def _nvrtc_reason() -> str:
    if not _installed("cupy"):
        return "needs cupy installed, for its NVRTC bindings"
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except (ImportError, RuntimeError) as error:
        return f"needs NVRTC, the CUDA runtime compiler ({error})"
    return ""


NVRTC_REASON = _nvrtc_reason()


@pytest.mark.skipif(bool(NVRTC_REASON), reason=NVRTC_REASON or "NVRTC is loadable")
def test_kernel_source_compiles():
    """NVRTC compiles every kernel instance for Hopper with an empty log."""
    from cupy_backends.cuda.libs import nvrtc

    program = nvrtc.createProgram(SOURCE, "softgrad.cu", [], [])
    for name in kernel_names():
        nvrtc.addNameExpression(program, name)
    nvrtc.compileProgram(program, ["--gpu-architecture=compute_90"])

    assert nvrtc.getProgramLog(program).strip() == ""
    assert len(nvrtc.getPTX(program)) > 0


# The harness with 16-bit dtypes


def test_plan_default_has_no_16_bit():
    """A sweep includes float16 and bfloat16 only on request."""
    planned = cases.plan(grid="quick")

    assert {case.dtype for case in planned} == set(DTYPES)


def test_plan_accepts_16_bit_on_request():
    """float16 and bfloat16 can be requested; an unknown dtype lists all four."""
    planned = cases.plan(grid="quick", dtypes=["float16", "bfloat16"])

    assert {case.dtype for case in planned} == {"float16", "bfloat16"}
    with pytest.raises(cases.SoftgradError, match="float16, bfloat16"):
        cases.plan(grid="quick", dtypes=["float8"])


def test_cpu_backend_skips_16_bit_case():
    """A CPU backend's float16 case is skipped with a reason, never timed."""
    case = cases.Case("softmax_backward", "numpy_vjp", Size(4, 5), "float16")

    with pytest.raises(cases.Skip, match="float16 is not supported by numpy_vjp"):
        cases.prepare(case)


@pytest.mark.parametrize("family", impls.FAMILIES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("one_hot", [False, True])
def test_16_bit_inputs_are_valid(family, dtype, one_hot):
    """16-bit inputs pass the whole-array checks and widen exactly for the oracle."""
    arrays = make_inputs(family, Size(8, 10), dtype, one_hot=one_hot)

    cases.validate_inputs(family, arrays)
    widened = cases.reference_inputs(arrays)

    assert str(arrays[0].dtype) == dtype
    assert widened[0].dtype == np.float32
    assert np.array_equal(widened[0].astype(numpy_dtype(dtype)), arrays[0])


def test_bfloat16_without_ml_dtypes_names_package(monkeypatch):
    """Without ml_dtypes, asking for bfloat16 raises an ImportError naming it."""
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)

    with pytest.raises(ImportError, match="ml_dtypes"):
        numpy_dtype("bfloat16")


def _exact_gradient(family, size, dtype):
    arrays = make_inputs(family, size, dtype)
    return arrays, impls.reference(family)(*cases.reference_inputs(arrays))


@pytest.mark.parametrize("family", impls.FAMILIES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("size", [Size(4096, 100), Size(8, 50257)], ids=str)
def test_rounded_exact_gradient_within_tolerance(family, dtype, size):
    """The exact gradient rounded once to a 16-bit type passes its tolerance."""
    _, expected = _exact_gradient(family, size, dtype)

    rounded = expected.astype(numpy_dtype(dtype))

    assert cases.relative_error(rounded, expected) <= cases.TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_sum_of_exp_fails_tolerance(dtype):
    """A from-logits kernel that sums a row's exponentials in 16 bits is caught."""
    size = Size(8, 50257)
    (logits, labels), expected = _exact_gradient("cce_logits_backward", size, dtype)
    z = cases.reference_inputs((logits,))[0]
    half = numpy_dtype(dtype)

    # Everything in float32 except the running sum, which is rounded at each step.
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    total = np.add.accumulate(shifted.astype(half), axis=1, dtype=half)[:, -1:]
    targets = np.zeros_like(shifted)
    targets[np.arange(size.n), labels] = 1
    gradient = (shifted / total.astype(np.float32) - targets) / size.n

    error = cases.relative_error(gradient.astype(half), expected)
    assert error > 3 * cases.TOLERANCE[dtype]


@pytest.mark.parametrize(
    ("rows", "within"), [(16384, True), (65536, False)], ids=["16384", "65536"]
)
def test_float16_tolerance_limit_in_batch(rows, within):
    """Rounded float16 CCE gradients pass up to N = 16384 and fail at 65536."""
    _, expected = _exact_gradient("cce_softmax_backward", Size(rows, 3), "float16")

    error = cases.relative_error(expected.astype(np.float16), expected)

    assert (error <= cases.TOLERANCE["float16"]) == within


# Values on a CUDA device


def _value_params():
    sizes = [Size(3, 5), Size(64, 1000), Size(2, 50257)]
    params = []
    for backend in GPU_BACKENDS:
        for dtype in backend.dtypes:
            for size in sizes:
                if backend.jacobian and size.classes > 1000:
                    continue  # 2 x 50257 x 50257 floats: 20 GB for one small case
                with_labels = backend.family != "softmax_backward"
                for one_hot in [False, True] if with_labels else [False]:
                    labels = "one-hot" if one_hot else "indices"
                    case_id = f"{backend.key}-{dtype}-{size}-{labels}"
                    marks = _needs_device(backend)
                    param = (backend, dtype, size, one_hot)
                    params.append(pytest.param(*param, marks=marks, id=case_id))
    return params


@pytest.mark.parametrize(("backend", "dtype", "size", "one_hot"), _value_params())
def test_gpu_backend_matches_reference(backend, dtype, size, one_hot):
    """A GPU backend's gradient matches the float64 oracle within its tolerance."""
    arrays = make_inputs(backend.family, size, dtype, one_hot=one_hot)
    originals = [array.copy() for array in arrays]
    expected = impls.reference(backend.family)(*cases.reference_inputs(arrays))

    result = backend(*arrays)

    assert result.shape == expected.shape
    assert cases.relative_error(result, expected) <= cases.TOLERANCE[dtype]
    for array, original in zip(arrays, originals):
        assert np.array_equal(array, original)


def _cupy_kernel(family):
    return impls.get(family, "cupy_kernel")


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(family, marks=_needs_device(_cupy_kernel(family)))
        for family in ("cce_softmax_backward", "cce_logits_backward")
    ],
)
def test_cupy_bad_label_row_is_nan(family):
    """On the device, a row whose label is out of range comes back NaN, alone."""
    backend = _cupy_kernel(family)
    scores, labels = make_inputs(family, Size(2, 5), "float32")
    native_scores, native_labels = backend.convert(scores, labels)
    native_labels[1] = 5

    result = backend.to_numpy(backend.call_native(native_scores, native_labels))

    assert np.isnan(result[1]).all()
    assert np.isfinite(result[0]).all()


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(family, marks=_needs_device(_cupy_kernel(family)))
        for family in impls.FAMILIES
    ],
)
def test_cupy_out_written_and_checked(family):
    """`out=` receives the gradient; an `out` that overlaps an input is rejected."""
    backend = _cupy_kernel(family)
    native = backend.convert(*make_inputs(family, Size(3, 7), "float32"))
    expected = backend.to_numpy(backend.call_native(*native))
    out = native[0].copy()
    out.fill(0)

    returned = backend.call_native(*native, out=out)

    assert returned is out
    assert np.array_equal(backend.to_numpy(out), expected)
    with pytest.raises(InputError, match="overlaps"):
        backend.call_native(*native, out=native[0])
