"""softgrad's backends: every way to compute the softmax and softmax + CCE gradients.

`backends()` lists them with their family, dtypes, optional dependency and a
memory estimate; a backend is called like the function it wraps.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from impls._checks import DEVICE_DTYPE_NAMES, InputError, output_for
from impls._options import accepts_loss_options
from impls.reference import REFERENCES

FAMILIES = ("softmax_backward", "cce_softmax_backward", "cce_logits_backward")

# The arguments each family takes, in order.
ARGUMENTS = {
    "softmax_backward": ("probs", "dvalues"),
    "cce_softmax_backward": ("probs", "labels"),
    "cce_logits_backward": ("logits", "labels"),
}

BOTH_DTYPES = ("float32", "float64")
GPU_DTYPES = DEVICE_DTYPE_NAMES  # float32, float64, float16, bfloat16


def itemsize(dtype) -> int:
    """Return the bytes per element of `dtype`, bfloat16 included without ml_dtypes."""
    return 2 if str(dtype) == "bfloat16" else np.dtype(dtype).itemsize


def _outputs(n, classes, itemsize):
    return n * classes * itemsize


def _jacobian_per_sample(n, classes, itemsize):
    """diagflat, the outer product and their difference: three L x L arrays."""
    return 3 * classes * classes * itemsize + _outputs(n, classes, itemsize)


def _jacobian_batched(n, classes, itemsize):
    """Count the bytes of the (N, L, L) Jacobians, the product and the output."""
    return (n * classes * classes + 2 * n * classes) * itemsize


def _composed(n, classes, itemsize):
    """One-hot targets and dL/ds, then the looped Jacobian."""
    return 2 * n * classes * itemsize + _jacobian_per_sample(n, classes, itemsize)


def _composed_logits(n, classes, itemsize):
    return n * classes * itemsize + _composed(n, classes, itemsize)


def _composed_vjp(n, classes, itemsize):
    """One-hot targets, dL/ds, the output and a boolean mask of nonzero targets."""
    return 3 * n * classes * itemsize + n * classes + n * itemsize


def _vector(n, classes, itemsize):
    """Count the bytes of the output and of at most one value per row."""
    return _outputs(n, classes, itemsize) + n * itemsize


def _row_pieces(n, classes, itemsize):
    """The output and two float64 partial values per block of the kernel's grid.

    impls.gpu.launch_shape makes fewer than 2 N + 4096 blocks on a GPU of at most
    1024 multiprocessors.
    """
    return _outputs(n, classes, itemsize) + 2 * 8 * (2 * n + 4096)


def _autograd_cross_entropy(n, classes, itemsize):
    """The log-softmax autograd saves for the backward, the gradient and the loss."""
    return 2 * _outputs(n, classes, itemsize) + n * itemsize


def _autograd(n, classes, itemsize):
    """log_softmax kept by the forward pass, the gradient it meets and the output."""
    return 3 * n * classes * itemsize + n * itemsize


def _jax_vector(n, classes, itemsize):
    """The inputs copied into XLA buffers, and the output."""
    return 3 * n * classes * itemsize + n * itemsize


def _jax_autograd(n, classes, itemsize):
    return n * classes * itemsize + _autograd(n, classes, itemsize)


@dataclass(frozen=True)
class Backend:
    """One implementation of one family, loaded on first call."""

    name: str
    family: str
    description: str
    target: str  # "module:function"
    requires: str | None = None  # the module an optional dependency provides
    dtypes: tuple[str, ...] = BOTH_DTYPES
    memory_model: Callable[[int, int, int], int] = _vector
    jacobian: bool = False  # builds L x L Jacobians, so memory grows with L^2
    baseline: bool = False  # the textbook path that speedups are measured against
    compiled: bool = False  # compiled on first call for each signature
    device: str = "cpu"  # where it computes: "cpu" or "gpu"
    # The inputs that `out=` may be (the same array, not a partial overlap),
    # because the backend is done reading each element before it writes there.
    out_may_alias: tuple[str, ...] = ()
    # Computes dL/ds = -y / s before the softmax backward, as the textbook does, so
    # a row whose label class has probability 0 (or so small that 1 / s overflows)
    # comes out NaN or infinite, where the closed form (s - y) / N is finite.
    divides_by_probs: bool = False
    peer: bool = False  # another library's implementation, timed for comparison
    # Backends of the same family whose kernels this one also runs, by size:
    # warming them up compiles every code path before timing.
    compiles_with: tuple[str, ...] = ()
    # "module:object" with convert(arrays), finish(result) and to_numpy(result),
    # for backends whose native arrays are not numpy's (peers, GPUs); see Adapter.
    adapter: str | None = None
    _state: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def _load(self):
        if "function" not in self._state:
            try:
                function = _resolve(self.target)
                adapter = _resolve(self.adapter) if self.adapter else NUMPY_ADAPTER
                reason = adapter.unavailable_reason()
            except ImportError as error:
                function, adapter = None, None
                reason = f"{self.requires or error.name} is not installed ({error})"
            if reason:
                function = None
            self._state.update(function=function, adapter=adapter, reason=reason)
        return self._state["function"]

    @property
    def available(self) -> bool:
        return self._load() is not None

    @property
    def reason(self) -> str:
        """Why the backend cannot run here, or "" when it can."""
        self._load()
        return self._state["reason"]

    def memory(self, n: int, classes: int, dtype) -> int:
        """Estimate the bytes one call allocates for (N, L) inputs of `dtype`."""
        return self.memory_model(n, classes, itemsize(dtype))

    def memory_available(self) -> int | None:
        """Return the free bytes of the backend's device, or None for host memory."""
        return self._require()[1].memory_available()

    def _require(self):
        function = self._load()
        if function is None:
            raise ImportError(f"backend {self.key} is unavailable: {self.reason}")
        return function, self._state["adapter"]

    def convert(self, *arrays) -> tuple:
        """Turn numpy inputs into the backend's native arrays; not part of a timing."""
        return self._require()[1].convert(arrays)

    def call_native(self, *native, **options):
        """Compute on native arrays and wait until the result is ready: what is timed."""
        function, adapter = self._require()
        return adapter.finish(function(*native, **options))

    def to_numpy(self, result) -> np.ndarray:
        """Turn a native result into a numpy array; not part of a timing."""
        return self._require()[1].to_numpy(result)

    def __call__(self, *arrays, **options):
        """Compute the gradient of numpy inputs and return it as a numpy array.

        A backend with an adapter writes into `out=` where its library can, and
        otherwise the result is copied into it. The cross-entropy options go to
        the adapter's option_path, as accepts_loss_options does for numpy backends.
        """
        function, adapter = self._require()
        if adapter is NUMPY_ADAPTER:
            return function(*arrays, **options)
        if adapter.option_path is None:
            return self._call_adapter(*arrays, **options)
        with_options = accepts_loss_options(adapter.option_path)(self._call_adapter)
        return with_options(*arrays, **options)

    def _call_adapter(self, *arrays, out=None, **options):
        adapter = self._require()[1]
        native = adapter.convert(arrays)
        if out is None:
            return adapter.to_numpy(self.call_native(*native, **options))

        checked = adapter.check(arrays)
        output_for(out, checked[0], dict(zip(ARGUMENTS[self.family], checked)))
        native_out = adapter.convert_out(out)
        if native_out is not None:
            options["out"] = native_out
        result = adapter.to_numpy(self.call_native(*native, **options))
        if not np.shares_memory(result, out):
            np.copyto(out, result)
        return out


class Adapter:
    """Hooks that move data in and out of a backend's native arrays.

    The numpy adapter passes arrays through. A peer or GPU backend overrides
    convert (host to device, outside the timing), finish (synchronize, inside
    the timing) and to_numpy (device to host, for the reference check). A GPU
    backend also overrides memory_available, so the memory guard compares with
    the device's free memory. A peer's check runs the shared input checks of
    impls._checks on the numpy side, so that it rejects bad input alike.
    """

    # For CCE families: option_path(scores, labels, options, *, out) on numpy
    # arrays, which computes the gradient with the cross-entropy options.
    option_path = None

    def unavailable_reason(self) -> str:
        """Return why the backend cannot run here (no device, say), or ""."""
        return ""

    def check(self, arrays: tuple) -> tuple:
        """Check numpy inputs and return them as the backend's checks leave them."""
        return arrays

    def convert(self, arrays: tuple) -> tuple:
        return arrays

    def convert_out(self, out: np.ndarray):
        """Return a native array that shares `out`'s memory, or None if none can."""

    def finish(self, result):
        return result

    def to_numpy(self, result) -> np.ndarray:
        return np.asarray(result)

    def memory_available(self) -> int | None:
        """Return the free bytes of the device it computes on, or None for the host."""
        return None


NUMPY_ADAPTER = Adapter()


def _resolve(target: str):
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def _entry(family, name, target, description, **details):
    return Backend(name, family, description, target, **details)


_SOFTMAX = "softmax_backward"
_CCE = "cce_softmax_backward"
_LOGITS = "cce_logits_backward"

_REGISTRY = (
    _entry(
        _SOFTMAX,
        "looped_jacobian",
        "impls.jacobian:looped_jacobian",
        "textbook loop: per sample diagflat(s) - s s^T, times dvalues",
        memory_model=_jacobian_per_sample,
        jacobian=True,
        baseline=True,
        out_may_alias=("probs", "dvalues"),
    ),
    _entry(
        _SOFTMAX,
        "einsum_jacobian",
        "impls.jacobian:einsum_jacobian",
        "all N Jacobians in one (N, L, L) array, contracted by np.einsum",
        memory_model=_jacobian_batched,
        jacobian=True,
        out_may_alias=("probs",),
    ),
    _entry(
        _SOFTMAX,
        "matmul_jacobian",
        "impls.jacobian:matmul_jacobian",
        "all N Jacobians in one (N, L, L) array, applied by np.matmul",
        memory_model=_jacobian_batched,
        jacobian=True,
        out_may_alias=("probs", "dvalues"),
    ),
    _entry(
        _SOFTMAX,
        "numpy_vjp",
        "impls.vjp:numpy_vjp",
        "Jacobian-free s * (d - sum(s * d)) in numpy",
        out_may_alias=("dvalues",),
    ),
    _entry(
        _SOFTMAX,
        "numba_serial",
        "impls.numba_kernels:numba_serial",
        "Jacobian-free, one serial numba kernel",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _SOFTMAX,
        "numba_parallel",
        "impls.numba_kernels:numba_parallel",
        "Jacobian-free, numba kernel with rows spread over threads",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _SOFTMAX,
        "numba_auto",
        "impls.numba_kernels:numba_auto",
        "Jacobian-free numba kernel, serial or parallel by size",
        requires="numba",
        compiled=True,
        compiles_with=("numba_serial", "numba_parallel"),
    ),
    _entry(
        _SOFTMAX,
        "torch",
        "impls.peers:torch_softmax_backward",
        "PyTorch: torch.ops.aten._softmax_backward_data",
        requires="torch",
        adapter="impls.peers:TORCH_SOFTMAX",
        memory_model=_vector,
        peer=True,
    ),
    _entry(
        _SOFTMAX,
        "jax",
        "impls.peers:jax_softmax_backward",
        "JAX: jax.vjp of jax.nn.softmax, jitted; the forward pass runs before timing",
        requires="jax",
        adapter="impls.peers:JAX_SOFTMAX",
        memory_model=_jax_vector,
        peer=True,
        compiled=True,
    ),
    _entry(
        _CCE,
        "composed_looped",
        "impls.cce:composed_looped",
        "textbook path: CCE backward -y / s / N, then the looped Jacobian",
        memory_model=_composed,
        jacobian=True,
        baseline=True,
        out_may_alias=("probs", "labels"),
        divides_by_probs=True,
    ),
    _entry(
        _CCE,
        "composed_vjp",
        "impls.cce:composed_vjp",
        "CCE backward, then the Jacobian-free softmax backward",
        memory_model=_composed_vjp,
        out_may_alias=("labels",),
        divides_by_probs=True,
    ),
    _entry(
        _CCE,
        "fused_numpy",
        "impls.cce:fused_numpy",
        "closed form (s - onehot) / N in numpy",
        out_may_alias=("probs",),
    ),
    _entry(
        _CCE,
        "fused_numba",
        "impls.numba_kernels:fused_numba",
        "closed form (s - onehot) / N in one numba kernel",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _CCE,
        "fused_numba_parallel",
        "impls.numba_kernels:fused_numba_parallel",
        "closed form (s - onehot) / N, numba kernel with rows spread over threads",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _CCE,
        "fused_numba_auto",
        "impls.numba_kernels:fused_numba_auto",
        "closed form (s - onehot) / N in numba, serial or parallel by size",
        requires="numba",
        compiled=True,
        compiles_with=("fused_numba", "fused_numba_parallel"),
    ),
    _entry(
        _CCE,
        "torch",
        "impls.peers:torch_fused",
        "PyTorch: (probs - onehot) / N in tensor operations (torch has no operator)",
        requires="torch",
        adapter="impls.peers:TORCH_PROBS",
        memory_model=_vector,
        peer=True,
    ),
    _entry(
        _CCE,
        "jax",
        "impls.peers:jax_fused",
        "JAX: (probs - onehot) / N, jitted into one XLA loop",
        requires="jax",
        adapter="impls.peers:JAX_PROBS",
        memory_model=_jax_vector,
        peer=True,
        compiled=True,
    ),
    _entry(
        _LOGITS,
        "composed_looped",
        "impls.cce:composed_looped_logits",
        "textbook path from logits: softmax, CCE backward, looped Jacobian",
        memory_model=_composed_logits,
        jacobian=True,
        baseline=True,
        out_may_alias=("logits", "labels"),
        divides_by_probs=True,
    ),
    _entry(
        _LOGITS,
        "logits_numpy",
        "impls.cce:logits_numpy",
        "stable softmax, then (s - onehot) / N, in numpy",
        out_may_alias=("logits",),
    ),
    _entry(
        _LOGITS,
        "logits_numba",
        "impls.numba_kernels:logits_numba",
        "stable softmax and (s - onehot) / N in one numba kernel, vectorized exp",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _LOGITS,
        "logits_numba_parallel",
        "impls.numba_kernels:logits_numba_parallel",
        "the logits_numba kernel with rows spread over threads",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _LOGITS,
        "logits_numba_auto",
        "impls.numba_kernels:logits_numba_auto",
        "the logits_numba kernel, serial or parallel by size",
        requires="numba",
        compiled=True,
        compiles_with=("logits_numba", "logits_numba_parallel"),
    ),
    _entry(
        _LOGITS,
        "logits_numba_libm",
        "impls.numba_kernels:logits_numba_libm",
        "the logits_numba kernel with numba's scalar max and np.exp, for comparison",
        requires="numba",
        compiled=True,
    ),
    _entry(
        _LOGITS,
        "torch",
        "impls.peers:torch_cross_entropy",
        "PyTorch: cross_entropy forward and autograd backward",
        requires="torch",
        adapter="impls.peers:TORCH_LOGITS",
        memory_model=_autograd,
        peer=True,
    ),
    _entry(
        _LOGITS,
        "jax",
        "impls.peers:jax_cross_entropy",
        "JAX: jax.grad of the mean softmax cross-entropy, jitted",
        requires="jax",
        adapter="impls.peers:JAX_LOGITS",
        memory_model=_jax_autograd,
        peer=True,
        compiled=True,
    ),
    # GPU backends. CuPy's kernels compile on first call (NVRTC, cached on disk).
    _entry(
        _SOFTMAX,
        "cupy_kernel",
        "impls.gpu:cupy_vjp",
        "Jacobian-free, one CUDA kernel per row block (CuPy), float32 sums",
        requires="cupy",
        dtypes=GPU_DTYPES,
        memory_model=_row_pieces,
        compiled=True,
        device="gpu",
        adapter="impls.gpu:SOFTMAX",
    ),
    _entry(
        _SOFTMAX,
        "cupy_matmul_jacobian",
        "impls.gpu:cupy_matmul_jacobian",
        "all N Jacobians in one (N, L, L) GPU array, applied by cupy.matmul",
        requires="cupy",
        memory_model=_jacobian_batched,
        jacobian=True,
        compiled=True,
        device="gpu",
        adapter="impls.gpu:SOFTMAX",
    ),
    _entry(
        _SOFTMAX,
        "torch_cuda",
        "impls.gpu_torch:torch_softmax_backward",
        "PyTorch CUDA: torch.ops.aten._softmax_backward_data",
        requires="torch",
        dtypes=GPU_DTYPES,
        device="gpu",
        adapter="impls.gpu_torch:SOFTMAX",
    ),
    _entry(
        _CCE,
        "cupy_kernel",
        "impls.gpu:cupy_fused",
        "closed form (s - onehot) / N, one CUDA kernel per row block (CuPy)",
        requires="cupy",
        dtypes=GPU_DTYPES,
        memory_model=_row_pieces,
        compiled=True,
        device="gpu",
        adapter="impls.gpu:CCE",
    ),
    _entry(
        _LOGITS,
        "cupy_kernel",
        "impls.gpu:cupy_logits",
        "online row max and sum of exp, then one write; CUDA kernels (CuPy)",
        requires="cupy",
        dtypes=GPU_DTYPES,
        memory_model=_row_pieces,
        compiled=True,
        device="gpu",
        adapter="impls.gpu:LOGITS",
    ),
    _entry(
        _LOGITS,
        "torch_cuda",
        "impls.gpu_torch:torch_cross_entropy_backward",
        "PyTorch CUDA: autograd.grad of F.cross_entropy, forward included",
        requires="torch",
        dtypes=GPU_DTYPES,
        memory_model=_autograd_cross_entropy,
        device="gpu",
        adapter="impls.gpu_torch:LOGITS",
    ),
)


def backends(family: str | None = None) -> list[Backend]:
    """List the backends of `family`, or of every family, available or not.

    Backends come family by family, in registry order within each family.
    """
    if family is not None and family not in FAMILIES:
        raise InputError(
            f"unknown family `{family}`, expected one of: {', '.join(FAMILIES)}"
        )
    families = FAMILIES if family is None else (family,)
    return [b for name in families for b in _REGISTRY if b.family == name]


def get(family: str, name: str) -> Backend:
    """Return the backend `name` of `family`."""
    found = [b for b in backends(family) if b.name == name]
    if not found:
        names = ", ".join(b.name for b in backends(family))
        raise InputError(
            f"unknown backend `{name}` in family `{family}`, expected one of: {names}"
        )
    return found[0]


def reference(family: str) -> Callable:
    """Return the float64 oracle of `family`."""
    backends(family)  # rejects an unknown family
    return REFERENCES[family]


__all__ = [
    "ARGUMENTS",
    "FAMILIES",
    "Adapter",
    "Backend",
    "InputError",
    "backends",
    "get",
    "itemsize",
    "reference",
]
