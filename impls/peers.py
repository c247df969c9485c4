"""PyTorch and JAX as backends, so that softgrad's kernels are timed against them.

Both are optional (`pip install -e ".[peers]"`) and imported on first use, so a
backend of a missing library is listed as unavailable with the reason.
"""

from __future__ import annotations

import importlib
import os
import warnings

import numba
import numpy as np

from impls import ARGUMENTS, Adapter
from impls._checks import float_matrix, labels_for, matching_pair, output_for
from impls._options import loss_terms
from impls.cce import loss_coefficients

# The imported libraries and what is built from them, filled on first use.
_LOADED: dict = {}


def check_inputs(family: str, arrays: tuple) -> tuple[np.ndarray, ...]:
    """Run the numpy backends' input checks, so that peers reject bad input alike."""
    if len(arrays) != 2:
        raise TypeError(f"{family} takes 2 arrays, got {len(arrays)}")
    first_name = ARGUMENTS[family][0]
    if family == "softmax_backward":
        return matching_pair(*arrays, ARGUMENTS[family])
    first = float_matrix(arrays[0], first_name)
    return first, labels_for(arrays[1], first, first_name)


def _import(name: str):
    """Import `name` and return the module, or raise ImportError naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f'{error}; install the peers with `pip install -e ".[peers]"`',
            name=name,
        ) from error


def _option_path(gradient_from_coefficients, from_logits: bool):
    """Return an option path that computes the gradient in a peer's arithmetic.

    The options are checked and turned into loss coefficients C as the numpy
    option paths do, so that errors are the same. The peer then computes
    s * sum_k C[:, k] - C, with its own softmax of the logits.
    """
    name = "logits" if from_logits else "probs"

    def option_path(scores, labels, options, *, out=None):
        scores = float_matrix(scores, name)
        terms = loss_terms(scores, labels, name, options)
        out = output_for(out, scores, {name: scores, "labels": np.asarray(labels)})
        coefficients = loss_coefficients(terms, scores.dtype)
        np.copyto(out, gradient_from_coefficients(scores, coefficients, from_logits))
        return out

    return option_path


# --- PyTorch ----------------------------------------------------------------------


def load_torch():
    """Import torch and give it numba's thread count, so every backend uses as many."""
    if "torch" not in _LOADED:
        torch = _import("torch")
        torch.set_num_threads(numba.get_num_threads())
        _LOADED["torch"] = torch
    return _LOADED["torch"]


def _tensor(array: np.ndarray):
    """Wrap `array` in a tensor sharing its memory; copy only for negative strides."""
    if any(stride < 0 for stride in array.strides):
        array = np.ascontiguousarray(array)  # torch.from_numpy rejects negative strides
    with warnings.catch_warnings():
        # torch warns about read-only arrays; the peers never write into their inputs.
        warnings.simplefilter("ignore", UserWarning)
        return _LOADED["torch"].from_numpy(array)


class TorchAdapter(Adapter):
    """Checks numpy inputs and wraps them in CPU tensors without copying them.

    PyTorch's CPU operators return when the result is complete, so `finish`
    has nothing to wait for.
    """

    def __init__(self, family: str, writes_out: bool):
        self.family = family
        self.writes_out = writes_out
        if family != "softmax_backward":
            from_logits = family == "cce_logits_backward"
            self.option_path = _option_path(_torch_coefficients, from_logits)

    def unavailable_reason(self) -> str:
        try:
            load_torch()
        except ImportError as error:
            return f"torch is not installed ({error})"
        return ""

    def check(self, arrays: tuple) -> tuple:
        return check_inputs(self.family, arrays)

    def convert(self, arrays: tuple) -> tuple:
        return tuple(_tensor(array) for array in self.check(arrays))

    def convert_out(self, out: np.ndarray):
        # torch 2.13's _softmax_backward_data.out writes float32 results in C order
        # into a Fortran-ordered out, so other layouts receive a copy instead.
        if self.writes_out and out.flags.c_contiguous:
            return _tensor(out)
        return None

    def to_numpy(self, result) -> np.ndarray:
        return result.numpy()


def _torch_coefficients(scores, coefficients, from_logits):
    torch = load_torch()
    probs = _tensor(scores)
    if from_logits:
        probs = torch.softmax(probs, dim=1)
    weights = _tensor(coefficients)
    return (probs * weights.sum(dim=1, keepdim=True) - weights).numpy()


def torch_softmax_backward(probs, dvalues, *, out=None):
    """Compute dL/dz with PyTorch's softmax backward operator, given tensors."""
    aten = _LOADED["torch"].ops.aten
    dtype = probs.dtype
    if out is None:
        return aten._softmax_backward_data(dvalues, probs, 1, dtype)
    return aten._softmax_backward_data.out(dvalues, probs, 1, dtype, grad_input=out)


def torch_fused(probs, labels, *, out=None):
    """Compute (probs - onehot) / N with PyTorch tensor operations, given tensors.

    PyTorch has no operator for this gradient from probabilities, so this is the
    closed form a PyTorch user writes: one division, then a subtraction at each
    label (or of the one-hot rows).
    """
    torch = _LOADED["torch"]
    n = probs.shape[0]
    if labels.ndim == 2:
        return torch.sub(probs, labels, out=out).div_(n)
    grad = torch.div(probs, n, out=out)
    step = torch.tensor(-1.0 / n, dtype=probs.dtype)
    return grad.index_put_((torch.arange(n), labels), step, accumulate=True)


def torch_cross_entropy(logits, labels):
    """Compute dL/dz of torch's `cross_entropy` by autograd: forward and backward."""
    torch = _LOADED["torch"]
    leaf = logits.detach().requires_grad_()
    loss = torch.nn.functional.cross_entropy(leaf, labels)
    (grad,) = torch.autograd.grad(loss, leaf)
    return grad


TORCH_SOFTMAX = TorchAdapter("softmax_backward", writes_out=True)
TORCH_PROBS = TorchAdapter("cce_softmax_backward", writes_out=True)
# Autograd allocates the gradient itself, so an `out=` array receives a copy.
TORCH_LOGITS = TorchAdapter("cce_logits_backward", writes_out=False)


# --- JAX --------------------------------------------------------------------------


def load_jax():
    """Import JAX with float64 enabled and build the jitted functions, once.

    float64 arrays would otherwise be truncated to float32 without a word, so
    `jax_enable_x64` is switched on for the whole process. XLA's CPU thread
    pool takes its size from PJRT_NPROC when its client starts; unless the
    caller set it, it gets numba's thread count.
    """
    if "jax" not in _LOADED:
        os.environ.setdefault("PJRT_NPROC", str(numba.get_num_threads()))
        jax = _import("jax")
        jax.config.update("jax_enable_x64", True)
        _LOADED["jax"] = jax
        _LOADED["jax_functions"] = _build_jax_functions(jax)
    return _LOADED["jax"]


def _build_jax_functions(jax) -> dict:
    jnp = jax.numpy

    def apply_vjp(vjp, dvalues):
        return vjp(dvalues)[0]

    def fused(probs, labels):
        n, classes = probs.shape
        if labels.ndim == 1:
            labels = jax.nn.one_hot(labels, classes, dtype=probs.dtype)
        return (probs - labels) / n

    def cross_entropy(logits, labels):
        log_probs = jax.nn.log_softmax(logits, axis=1)
        if labels.ndim == 1:
            picked = jnp.take_along_axis(log_probs, labels[:, None], axis=1)
            return -jnp.mean(picked)
        return -jnp.mean(jnp.sum(labels * log_probs, axis=1))

    def from_coefficients(scores, coefficients, from_logits):
        probs = jax.nn.softmax(scores, axis=1) if from_logits else scores
        return probs * coefficients.sum(axis=1, keepdims=True) - coefficients

    return {
        "coefficients": jax.jit(from_coefficients, static_argnums=2),
        "softmax_backward": jax.jit(apply_vjp),
        "cce_softmax_backward": jax.jit(fused),
        "cce_logits_backward": jax.jit(jax.grad(cross_entropy)),
    }


class JaxAdapter(Adapter):
    """Checks numpy inputs and moves them into JAX arrays, outside the timing.

    JAX dispatches asynchronously, so `finish` blocks until the result exists.
    JAX arrays are immutable: an `out=` array receives a copy of the result.
    """

    def __init__(self, family: str):
        self.family = family
        if family != "softmax_backward":
            from_logits = family == "cce_logits_backward"
            self.option_path = _option_path(_jax_coefficients, from_logits)

    def unavailable_reason(self) -> str:
        try:
            load_jax()
        except ImportError as error:
            return f"jax is not installed ({error})"
        return ""

    def check(self, arrays: tuple) -> tuple:
        return check_inputs(self.family, arrays)

    def convert(self, arrays: tuple) -> tuple:
        jax = _LOADED["jax"]
        checked = self.check(arrays)
        if self.family == "softmax_backward":
            checked = (_softmax_vjp(jax, checked[0]), checked[1])
        native = tuple(jax.numpy.asarray(a) if _is_numpy(a) else a for a in checked)
        return jax.block_until_ready(native)

    def finish(self, result):
        return result.block_until_ready()

    def to_numpy(self, result) -> np.ndarray:
        return np.asarray(result)


def _is_numpy(value) -> bool:
    return isinstance(value, np.ndarray)


def _softmax_vjp(jax, probs: np.ndarray):
    """Return JAX's VJP function of jax.nn.softmax at logits whose softmax is `probs`.

    The VJP needs what the forward pass keeps, so the forward pass runs here,
    on log(probs), outside the timing; the timed call applies the VJP.
    NOTE: a row of all-zero probabilities has no logits, and gives NaN here.
    """
    with np.errstate(divide="ignore"):
        logits = np.log(probs)
    vjp = jax.vjp(jax.nn.softmax, jax.numpy.asarray(logits))[1]
    # jit compiles again for every new VJP structure, even an equal one, so VJPs
    # of one shape and dtype are rebuilt on the first structure seen.
    leaves, structure = jax.tree_util.tree_flatten(vjp)
    structures = _LOADED.setdefault("vjp_structures", {})
    structure = structures.setdefault((probs.shape, probs.dtype.str), structure)
    return jax.tree_util.tree_unflatten(structure, leaves)


def _jax_coefficients(scores, coefficients, from_logits):
    load_jax()
    function = _LOADED["jax_functions"]["coefficients"]
    return np.asarray(function(scores, coefficients, from_logits))


def jax_softmax_backward(vjp, dvalues):
    """Apply JAX's VJP of jax.nn.softmax to `dvalues`, jitted."""
    return _LOADED["jax_functions"]["softmax_backward"](vjp, dvalues)


def jax_fused(probs, labels):
    """Compute (probs - onehot) / N jitted by XLA, which fuses it into one loop."""
    return _LOADED["jax_functions"]["cce_softmax_backward"](probs, labels)


def jax_cross_entropy(logits, labels):
    """Compute jax.grad of the mean softmax cross-entropy, jitted."""
    return _LOADED["jax_functions"]["cce_logits_backward"](logits, labels)


JAX_SOFTMAX = JaxAdapter("softmax_backward")
JAX_PROBS = JaxAdapter("cce_softmax_backward")
JAX_LOGITS = JaxAdapter("cce_logits_backward")
