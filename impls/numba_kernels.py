"""Softmax and CCE gradients as numba kernels: one pass over memory per row.

Each kernel allocates no temporary array and walks a row at most three times.
Only the first walk reads memory when the row fits in cache. fastmath allows
reassociation and contraction only, so LLVM vectorizes a row's sums while a
NaN keeps its IEEE meaning and stays in its row.
"""

from __future__ import annotations

import types as types_module

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from impls._checks import float_matrix, labels_for, matching_pair, output_for
from impls._options import accepts_loss_options
from impls.numba_options import fused_options, logits_options

FASTMATH = {"reassoc", "contract"}

# Elements (N x L) from which the auto backends spread rows over threads: below
# it, waking numba's threads costs more than they save. Measured on a 2-core
# AVX-512 machine, where the serial and parallel kernels cross between 1e4 and
# 3e4 elements (the logits kernel earlier, as it does more work per element).
# NOTE: the crossover moves with the core count and the machine's load.
PARALLEL_MIN_ELEMENTS = {"vjp": 32_768, "fused": 32_768, "logits": 8_192}


def _jit(parallel=False):
    return numba.njit(cache=True, fastmath=FASTMATH, parallel=parallel)


def _serial_and_parallel(function):
    """Compile `function` twice: serial, and with its prange spread over threads.

    numba names its cache entries after the function, not after the options,
    so the parallel kernel compiles a renamed copy. Otherwise one process
    could load the other's cached machine code.
    """
    copy = types_module.FunctionType(
        function.__code__, function.__globals__, f"{function.__name__}_parallel"
    )
    copy.__qualname__ = f"{function.__qualname__}_parallel"
    return _jit()(function), _jit(parallel=True)(copy)


# --- bit casts ---------------------------------------------------------------------


@intrinsic
def _float_bits(typingctx, value):
    """Reinterpret a float64 as int64, or a float32 as int32, without converting."""
    if value == types.float64:
        signature, target = types.int64(value), ir.IntType(64)
    elif value == types.float32:
        signature, target = types.int32(value), ir.IntType(32)
    else:
        return None

    def codegen(context, builder, signature, arguments):
        return builder.bitcast(arguments[0], target)

    return signature, codegen


@intrinsic
def _bits_float64(typingctx, bits):
    """Reinterpret an int64 as a float64."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, arguments):
        return builder.bitcast(arguments[0], ir.DoubleType())

    return types.float64(bits), codegen


@intrinsic
def _bits_float32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, arguments):
        value = arguments[0]
        if value.type.width > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


# --- exp that LLVM can vectorize ---------------------------------------------------
#
# numba's np.exp is a scalar library call per element. This exp reduces the
# argument to r = x - k ln 2 with |r| <= ln(2) / 2, takes e^r from its Taylor
# polynomial (degree 12 in float64, 7 in float32, where the truncation error
# is below half an ulp), and scales by 2^k built from the exponent bits. 2^k is
# applied in two halves, so results that underflow into subnormals are rounded
# once, like np.exp's. Arguments are clamped to where exp is 0 or infinity.

_LOG2E = 1.4426950408889634
_LN2_HIGH = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HIGH is exact
_LN2_LOW = 1.90821492927058770002e-10
_EXP_LOW, _EXP_HIGH = -746.0, 710.0  # e^-746 rounds to 0, e^710 overflows

_f32 = np.float32
_LOG2E_32 = _f32(1.44269504)
_LN2_HIGH_32 = _f32(0.693359375)
_LN2_LOW_32 = _f32(-2.12194440e-4)
_EXP_LOW_32, _EXP_HIGH_32 = _f32(-104.0), _f32(89.0)
_HALF_32 = _f32(0.5)
_TAYLOR_32 = tuple(_f32(1.0 / np.prod(np.arange(1, k + 1))) for k in range(8))
_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7 = _TAYLOR_32


def _exp64(x):
    # Comparisons, unlike min and max, keep a NaN argument as it is.
    if x < _EXP_LOW:  # noqa: PLR1730
        x = _EXP_LOW
    if x > _EXP_HIGH:  # noqa: PLR1730
        x = _EXP_HIGH
    k = np.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HIGH) - k * _LN2_LOW
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    n = np.int64(k)
    half = n >> 1
    return (
        p * _bits_float64((half + 1023) << 52) * _bits_float64((n - half + 1023) << 52)
    )


def _exp32(x):
    # Comparisons, unlike min and max, keep a NaN argument as it is.
    if x < _EXP_LOW_32:  # noqa: PLR1730
        x = _EXP_LOW_32
    if x > _EXP_HIGH_32:  # noqa: PLR1730
        x = _EXP_HIGH_32
    k = np.floor(x * _LOG2E_32 + _HALF_32)
    r = (x - k * _LN2_HIGH_32) - k * _LN2_LOW_32
    p = _T7
    p = p * r + _T6
    p = p * r + _T5
    p = p * r + _T4
    p = p * r + _T3
    p = p * r + _T2
    p = p * r + _T1
    p = p * r + _T0
    n = np.int32(k)
    half = n >> 1
    return p * _bits_float32((half + 127) << 23) * _bits_float32((n - half + 127) << 23)


def vector_exp(x):
    """Return e^x; compiled by numba into code that LLVM can vectorize."""
    return np.exp(x)


# Contraction only: reassociation would undo the exact range reduction.
@overload(vector_exp, jit_options={"fastmath": {"contract"}})
def _vector_exp_overload(x):
    if x == types.float64:
        return _exp64
    if x == types.float32:
        return _exp32
    return None


@_jit()
def _exp_flat(values, out):
    for i in range(values.shape[0]):
        out[i] = vector_exp(values[i])


def fast_exp(values) -> np.ndarray:
    """Return e^values (float32 or float64) computed by the kernels' own exp."""
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        raise TypeError(f"`values` must be float32 or float64, got {values.dtype}")
    flat = np.ascontiguousarray(values).reshape(-1)
    out = np.empty_like(flat)
    _exp_flat(flat, out)
    return out.reshape(values.shape)


# --- row max that LLVM can vectorize -----------------------------------------------
#
# LLVM does not vectorize a float max reduction without the no-NaN flag, and
# a scalar max costs more than the exp. For IEEE floats, flipping the non-sign
# bits of negative values turns the bit patterns into integers in the same
# order, and integer max vectorizes. A NaN in the row gives a NaN or a
# too-small max, and either way the row's sum of exponentials is NaN.


def _ordered_key(x):
    return x


@overload(_ordered_key)
def _ordered_key_overload(x):
    if x == types.float64:

        def key64(x):
            bits = _float_bits(x)
            return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)

        return key64
    if x == types.float32:

        def key32(x):
            bits = np.int64(_float_bits(x))
            return bits ^ ((bits >> 31) & 0x7FFFFFFF)

        return key32
    return None


def _key_value(key, like):
    return key


@overload(_key_value)
def _key_value_overload(key, like):
    if like == types.float64:

        def value64(key, like):
            return _bits_float64(key ^ ((key >> 63) & 0x7FFFFFFFFFFFFFFF))

        return value64
    if like == types.float32:

        def value32(key, like):
            return _bits_float32(key ^ ((key >> 31) & 0x7FFFFFFF))

        return value32
    return None


# --- the row kernels ---------------------------------------------------------------


def _vjp_rows(probs, dvalues, out):
    for row in numba.prange(probs.shape[0]):
        row_dot = probs.dtype.type(0)
        for k in range(probs.shape[1]):
            row_dot += probs[row, k] * dvalues[row, k]
        for k in range(probs.shape[1]):
            out[row, k] = probs[row, k] * (dvalues[row, k] - row_dot)


def _fused_index_rows(probs, labels, out):
    scale = probs.dtype.type(1.0 / probs.shape[0])
    for row in numba.prange(probs.shape[0]):
        for k in range(probs.shape[1]):
            out[row, k] = probs[row, k] * scale
        out[row, labels[row]] -= scale


def _fused_dense_rows(probs, targets, out):
    scale = probs.dtype.type(1.0 / probs.shape[0])
    for row in numba.prange(probs.shape[0]):
        for k in range(probs.shape[1]):
            out[row, k] = (probs[row, k] - targets[row, k]) * scale


def _logits_rows(logits, labels, targets, use_indices, out):
    """Write (softmax(z) - y) / N: the row max, then exp and sum, then the scaling.

    Three walks over a row, but only the first two read the logits and the
    row is in cache by then. An online softmax would read each row once, but
    it computes each exponential twice, and exp is the costly part.
    """
    scale = logits.dtype.type(1.0 / logits.shape[0])
    for row in numba.prange(logits.shape[0]):
        key = _ordered_key(logits[row, 0])
        for k in range(1, logits.shape[1]):
            key = max(key, _ordered_key(logits[row, k]))
        row_max = _key_value(key, logits[row, 0])
        total = logits.dtype.type(0)
        for k in range(logits.shape[1]):
            shifted = vector_exp(logits[row, k] - row_max)
            out[row, k] = shifted
            total += shifted
        factor = scale / total
        if use_indices:
            for k in range(logits.shape[1]):
                out[row, k] *= factor
            out[row, labels[row]] -= scale
        else:
            for k in range(logits.shape[1]):
                out[row, k] = out[row, k] * factor - targets[row, k] * scale


def _logits_libm_rows(logits, labels, targets, use_indices, out):
    """Write the logits gradient with numba's scalar max and np.exp, for comparison."""
    scale = logits.dtype.type(1.0 / logits.shape[0])
    for row in numba.prange(logits.shape[0]):
        row_max = logits[row, 0]
        for k in range(1, logits.shape[1]):
            row_max = max(row_max, logits[row, k])
        total = logits.dtype.type(0)
        for k in range(logits.shape[1]):
            shifted = np.exp(logits[row, k] - row_max)
            out[row, k] = shifted
            total += shifted
        factor = scale / total
        if use_indices:
            for k in range(logits.shape[1]):
                out[row, k] *= factor
            out[row, labels[row]] -= scale
        else:
            for k in range(logits.shape[1]):
                out[row, k] = out[row, k] * factor - targets[row, k] * scale


_KERNELS = {
    "vjp": _serial_and_parallel(_vjp_rows),
    "fused_index": _serial_and_parallel(_fused_index_rows),
    "fused_dense": _serial_and_parallel(_fused_dense_rows),
    "logits": _serial_and_parallel(_logits_rows),
}
_logits_libm = _jit()(_logits_libm_rows)

# Placeholders so the one-hot and index paths of the logits kernel share one signature.
_NO_LABELS = np.zeros(1, dtype=np.int64)


@_jit()
def _count_out_of_range(labels, classes):
    count = 0
    for i in range(labels.shape[0]):
        count += (labels[i] < 0) | (labels[i] >= classes)
    return count


def _checked_labels(labels, scores: np.ndarray, scores_name: str) -> np.ndarray:
    """Return labels_for(labels, scores, scores_name), faster for int64 indices.

    labels_for's min and max are two numpy reductions, about 2 us per call
    that a small kernel cannot afford. Valid int64 indices are checked here in
    one compiled pass; anything else goes to labels_for, which raises its error.
    """
    if (
        type(labels) is np.ndarray
        and labels.ndim == 1
        and labels.dtype == np.int64
        and labels.shape[0] == scores.shape[0]
        and _count_out_of_range(labels, scores.shape[1]) == 0
    ):
        return labels
    return labels_for(labels, scores, scores_name)


def use_parallel(kind: str, shape: tuple[int, int]) -> bool:
    """Decide whether the auto backend's kernel of `kind` runs on numba's threads.

    It does with more than one row, more than one thread, and at least
    PARALLEL_MIN_ELEMENTS[kind] elements.
    """
    n, classes = shape
    return (
        n > 1
        and n * classes >= PARALLEL_MIN_ELEMENTS[kind]
        and numba.get_num_threads() > 1
    )


def _kernel(name: str, kind: str, shape, parallel: bool | None):
    """Return the serial or the parallel kernel; None for parallel chooses by size."""
    if parallel is None:
        parallel = use_parallel(kind, shape)
    return _KERNELS[name][parallel]


# --- softmax_backward ----------------------------------------------------------------


def _vjp(probs, dvalues, out, parallel):
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    out = output_for(out, probs, {"probs": probs, "dvalues": dvalues})
    _kernel("vjp", "vjp", probs.shape, parallel)(probs, dvalues, out)
    return out


def numba_serial(probs, dvalues, *, out=None):
    """Compute dL/dz = s * (d - sum(s * d)) in one serial numba kernel."""
    return _vjp(probs, dvalues, out, parallel=False)


def numba_parallel(probs, dvalues, *, out=None):
    """Compute dL/dz = s * (d - sum(s * d)) with rows spread over numba's threads."""
    return _vjp(probs, dvalues, out, parallel=True)


def numba_auto(probs, dvalues, *, out=None):
    """Compute dL/dz = s * (d - sum(s * d)), on numba's threads when the size pays."""
    return _vjp(probs, dvalues, out, parallel=None)


# --- cce_softmax_backward ------------------------------------------------------------


def _fused(probs, labels, out, parallel):
    probs = float_matrix(probs, "probs")
    labels = _checked_labels(labels, probs, "probs")
    out = output_for(out, probs, {"probs": probs, "labels": labels})
    name = "fused_index" if labels.ndim == 1 else "fused_dense"
    _kernel(name, "fused", probs.shape, parallel)(probs, labels, out)
    return out


@accepts_loss_options(fused_options)
def fused_numba(probs, labels, *, out=None):
    """Compute dL/dz = (probs - onehot) / N in one serial numba kernel."""
    return _fused(probs, labels, out, parallel=False)


@accepts_loss_options(fused_options)
def fused_numba_parallel(probs, labels, *, out=None):
    """Compute dL/dz = (probs - onehot) / N with rows spread over numba's threads."""
    return _fused(probs, labels, out, parallel=True)


@accepts_loss_options(fused_options)
def fused_numba_auto(probs, labels, *, out=None):
    """Compute dL/dz = (probs - onehot) / N, on numba's threads when the size pays."""
    return _fused(probs, labels, out, parallel=None)


# --- cce_logits_backward -------------------------------------------------------------


def _logits_arguments(logits, labels, out):
    logits = float_matrix(logits, "logits")
    labels = _checked_labels(labels, logits, "logits")
    out = output_for(out, logits, {"logits": logits, "labels": labels})
    if labels.ndim == 1:
        return logits, labels, logits[:1], True, out
    return logits, _NO_LABELS, labels, False, out


def _logits(logits, labels, out, parallel):
    arguments = _logits_arguments(logits, labels, out)
    _kernel("logits", "logits", arguments[0].shape, parallel)(*arguments)
    return arguments[-1]


@accepts_loss_options(logits_options)
def logits_numba(logits, labels, *, out=None):
    """Compute dL/dz from logits in one serial numba kernel with a vectorized exp."""
    return _logits(logits, labels, out, parallel=False)


@accepts_loss_options(logits_options)
def logits_numba_parallel(logits, labels, *, out=None):
    """Compute dL/dz from logits with rows spread over numba's threads."""
    return _logits(logits, labels, out, parallel=True)


@accepts_loss_options(logits_options)
def logits_numba_auto(logits, labels, *, out=None):
    """Compute dL/dz from logits, on numba's threads when the size pays."""
    return _logits(logits, labels, out, parallel=None)


@accepts_loss_options(logits_options)
def logits_numba_libm(logits, labels, *, out=None):
    """Compute dL/dz from logits with numba's np.exp, one library call per element."""
    arguments = _logits_arguments(logits, labels, out)
    _logits_libm(*arguments)
    return arguments[-1]
