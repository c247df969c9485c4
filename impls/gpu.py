"""Softmax and CCE gradients on an NVIDIA GPU with CuPy: raw CUDA kernels, a Jacobian.

The functions take and return device arrays. Numpy inputs reach them through
the adapters below, which check them on the host and copy them to the device
outside any timing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cupy
import numpy as np

from impls import Adapter
from impls._checks import (
    CPU_DTYPE_NAMES,
    DEVICE_DTYPE_NAMES,
    InputError,
    check_labels,
    check_matrix,
    check_same_layout,
    device_inputs,
)
from impls.cuda_kernels import (
    SOURCE,
    STORAGE_TYPES,
    bfloat16_to_float32,
    kernel_names,
    launch_shape,
)

log = logging.getLogger(__name__)

# NOTE: the kernels compile with NVRTC 12.9 for sm_90, but this module has not yet
# run on a device; tests/test_gpu.py holds the value tests a first GPU run must pass.


@dataclass(frozen=True)
class BFloat16Array:
    """A CuPy array of bfloat16 values, stored as their uint16 bit patterns.

    CuPy's own bfloat16 support (through ml_dtypes) is recent and experimental,
    so the kernels read the bit patterns, which works with any CuPy version.
    """

    bits: cupy.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    @property
    def ndim(self) -> int:
        return self.bits.ndim

    @property
    def dtype(self) -> np.dtype:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)

    @classmethod
    def empty(cls, shape) -> BFloat16Array:
        return cls(cupy.empty(shape, dtype=np.uint16))


def unavailable_reason() -> str:
    """Return why CuPy cannot run kernels here, or "" when it can."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except RuntimeError as error:  # CUDARuntimeError, or a CUDA library not found
        return f"no CUDA device found: {error}"
    if count == 0:
        return "no CUDA device found: the CUDA runtime reports 0 devices"
    try:
        cupy.cuda.nvrtc.getVersion()
    except RuntimeError as error:  # NVRTCError, or cuda.pathfinder's not-found error
        return (
            f"CuPy cannot load NVRTC, the CUDA runtime compiler ({error}); install "
            f"the CUDA toolkit of this CuPy wheel, or its libraries with the "
            f"wheel's [ctk] extra, for example `pip install cupy-cuda12x[ctk]`"
        )
    return ""


def to_device(array: np.ndarray):
    """Copy a numpy array to the current device; bfloat16 becomes a BFloat16Array."""
    array = np.ascontiguousarray(array)
    if str(array.dtype) == "bfloat16":
        return BFloat16Array(cupy.asarray(array.view(np.uint16)))
    return cupy.asarray(array)


def to_host(array) -> np.ndarray:
    """Copy a device array to the host; bfloat16 comes back as float32, exactly."""
    if isinstance(array, BFloat16Array):
        return bfloat16_to_float32(cupy.asnumpy(array.bits))
    return cupy.asnumpy(array)


class CupyAdapter(Adapter):
    """Checks a family's numpy inputs on the host, then copies them to the device."""

    def __init__(self, family: str):
        self.family = family

    def unavailable_reason(self) -> str:
        return unavailable_reason()

    def convert(self, arrays: tuple) -> tuple:
        return tuple(to_device(array) for array in device_inputs(self.family, *arrays))

    def finish(self, result):
        cupy.cuda.get_current_stream().synchronize()
        return result

    def to_numpy(self, result) -> np.ndarray:
        return to_host(result)

    def memory_available(self) -> int:
        free, _ = cupy.cuda.runtime.memGetInfo()
        return free + cupy.get_default_memory_pool().free_bytes()


SOFTMAX = CupyAdapter("softmax_backward")
CCE = CupyAdapter("cce_softmax_backward")
LOGITS = CupyAdapter("cce_logits_backward")


@functools.cache
def _multiprocessors(device: int) -> int:
    return cupy.cuda.Device(device).attributes["MultiProcessorCount"]


@functools.cache
def _module() -> cupy.RawModule:
    """Compile every kernel instance in one NVRTC call; CuPy caches it on disk."""
    names = kernel_names()
    log.info("compiling %d CUDA kernels", len(names))
    return cupy.RawModule(code=SOURCE, name_expressions=names)


def _launch(name: str, grid: tuple, threads: int, *arguments) -> None:
    _module().get_function(name)(grid, (threads,), arguments)


def _raw(array):
    """Return the CuPy array a kernel reads: the bits of a BFloat16Array."""
    return array.bits if isinstance(array, BFloat16Array) else array


def _storage(array) -> str:
    return STORAGE_TYPES[str(array.dtype)]


def _accumulator(array) -> type:
    return np.float64 if str(array.dtype) == "float64" else np.float32


def _device_matrix(array, name: str, dtypes=DEVICE_DTYPE_NAMES):
    """Check a device matrix and return it C-contiguous (a copy only when it is not)."""
    if not isinstance(array, (cupy.ndarray, BFloat16Array)):
        raise InputError(
            f"`{name}` must be a CuPy array, got {type(array).__name__}; copy "
            f"numpy input with cupy.asarray, or call the backend through impls"
        )
    check_matrix(array, name, dtypes)
    if isinstance(array, BFloat16Array):
        return BFloat16Array(cupy.ascontiguousarray(array.bits))
    return cupy.ascontiguousarray(array)


def _device_labels(labels, scores, scores_name: str):
    """Check labels on the device by shape and dtype only; their values stay unread.

    Reading them would synchronize inside the timed call. The kernels turn a
    row whose label is out of range into NaN instead of writing out of bounds.
    """
    if not isinstance(labels, (cupy.ndarray, BFloat16Array)):
        raise InputError(f"`labels` must be a CuPy array, got {type(labels).__name__}")
    check_labels(labels, scores, scores_name)
    if labels.ndim == 1:
        return cupy.ascontiguousarray(labels, dtype=np.int64)
    if str(labels.dtype) != str(scores.dtype):
        # Converting (N, L) targets here would add a copy to the timed call.
        raise InputError(
            f"one-hot `labels` have dtype {labels.dtype}, expected the dtype of "
            f"`{scores_name}`, {scores.dtype}"
        )
    return _device_matrix(labels, "labels")


def _span(array) -> tuple[int, int]:
    raw = _raw(array)
    return raw.data.ptr, raw.data.ptr + raw.nbytes


def _output(out, like, inputs: dict):
    """Return a device buffer for the result: `out` after checking it, or a new one."""
    if out is None:
        if isinstance(like, BFloat16Array):
            return BFloat16Array.empty(like.shape)
        return cupy.empty(like.shape, dtype=like.dtype)
    if not isinstance(out, type(like)):
        raise InputError(
            f"`out` must be a {type(like).__name__}, got {type(out).__name__}"
        )
    if out.shape != like.shape or str(out.dtype) != str(like.dtype):
        raise InputError(
            f"`out` has shape {out.shape} and dtype {out.dtype}, expected shape "
            f"{like.shape} and dtype {like.dtype}"
        )
    if not _raw(out).flags.c_contiguous:
        raise InputError("`out` is not C-contiguous, expected a C-contiguous array")
    start, stop = _span(out)
    for name, array in inputs.items():
        other_start, other_stop = _span(array)
        if start < other_stop and other_start < stop:
            raise InputError(
                f"`out` overlaps `{name}`; pass a separate array, because the "
                f"result is written while `{name}` is still being read"
            )
    return out


def _shape_for(scores) -> tuple[int, int, int, int, int]:
    rows, classes = scores.shape
    device = _raw(scores).device.id
    threads, pieces, chunk = launch_shape(rows, classes, _multiprocessors(device))
    return rows, classes, threads, pieces, chunk


def cupy_vjp(probs, dvalues, *, out=None):
    """Compute dL/dz = s * (d - sum(s * d)) with one row reduction and one write."""
    probs = _device_matrix(probs, "probs")
    dvalues = _device_matrix(dvalues, "dvalues")
    check_same_layout(probs, dvalues, ("probs", "dvalues"))
    out = _output(out, probs, {"probs": probs, "dvalues": dvalues})
    rows, classes, threads, pieces, chunk = _shape_for(probs)
    storage = _storage(probs)
    s, d, result = _raw(probs), _raw(dvalues), _raw(out)
    sizes = (np.int64(classes), np.int64(chunk))

    if pieces == 1:
        _launch(f"vjp_rows<{storage}>", (rows,), threads, s, d, result, sizes[0])
        return out

    # Each block stores the dot product of its piece; the writers add them up.
    partial = cupy.empty(rows * pieces, dtype=_accumulator(probs))
    grid = (rows, pieces)
    _launch(f"vjp_partial<{storage}>", grid, threads, s, d, partial, *sizes)
    _launch(f"vjp_write<{storage}>", grid, threads, s, d, partial, result, *sizes)
    return out


def _label_arguments(labels, scores) -> tuple[str, object, object]:
    """Return the template flag and the (labels, targets) pointers a kernel takes.

    A kernel reads only one of the two pointers, so the other gets any array.
    """
    if labels.ndim == 1:
        return "false", labels, _raw(scores)
    return "true", _raw(labels), _raw(labels)


def cupy_fused(probs, labels, *, out=None):
    """Compute dL/dz = (probs - onehot) / N in one CUDA kernel, without a reduction."""
    probs = _device_matrix(probs, "probs")
    labels = _device_labels(labels, probs, "probs")
    out = _output(out, probs, {"probs": probs, "labels": labels})
    rows, classes, threads, pieces, chunk = _shape_for(probs)
    one_hot, indices, targets = _label_arguments(labels, probs)
    name = f"cce_write<{_storage(probs)}, {one_hot}>"
    sizes = (np.int64(rows), np.int64(classes), np.int64(chunk))
    s, result = _raw(probs), _raw(out)
    _launch(name, (rows, pieces), threads, s, indices, targets, result, *sizes)
    return out


def cupy_logits(logits, labels, *, out=None):
    """Compute dL/dz from logits: online row max and sum of exp, then one write."""
    logits = _device_matrix(logits, "logits")
    labels = _device_labels(labels, logits, "logits")
    out = _output(out, logits, {"logits": logits, "labels": labels})
    rows, classes, threads, pieces, chunk = _shape_for(logits)
    one_hot, indices, targets = _label_arguments(labels, logits)
    storage = _storage(logits)
    z, result = _raw(logits), _raw(out)
    n, sizes = np.int64(rows), (np.int64(classes), np.int64(chunk))

    if pieces == 1:
        name = f"logits_rows<{storage}, {one_hot}>"
        _launch(name, (rows,), threads, z, indices, targets, result, n, sizes[0])
        return out

    # Each block stores the (max, sum of exp) pair of its piece; the writers merge them.
    partial = cupy.empty(2 * rows * pieces, dtype=_accumulator(logits))
    grid = (rows, pieces)
    _launch(f"logits_partial<{storage}>", grid, threads, z, partial, *sizes)
    name = f"logits_write<{storage}, {one_hot}>"
    _launch(name, grid, threads, z, indices, targets, partial, result, n, *sizes)
    return out


def cupy_matmul_jacobian(probs, dvalues, *, out=None):
    """Compute dL/dz with all N Jacobians in one (N, L, L) device array, via matmul."""
    probs = _device_matrix(probs, "probs", CPU_DTYPE_NAMES)
    dvalues = _device_matrix(dvalues, "dvalues", CPU_DTYPE_NAMES)
    check_same_layout(probs, dvalues, ("probs", "dvalues"))
    out = _output(out, probs, {"probs": probs, "dvalues": dvalues})
    classes = probs.shape[1]

    jacobians = probs[:, :, None] * probs[:, None, :]
    cupy.negative(jacobians, out=jacobians)
    # The diagonal of each L x L block, as a strided view of the flat rows.
    diagonal = jacobians.reshape(probs.shape[0], classes * classes)[:, :: classes + 1]
    diagonal += probs
    product = cupy.matmul(jacobians, dvalues[:, :, None])
    out[...] = product[:, :, 0]
    return out
