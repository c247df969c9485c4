"""Softmax and CCE gradients as numba kernels: one loop nest per row, no temporaries.

fastmath is limited to reassociation and contraction: that is what lets LLVM
vectorize a row's dot product and sum, while NaN and infinity keep their IEEE
meaning, so a NaN in one row stays in that row.
"""

from __future__ import annotations

import numba
import numpy as np

from impls._checks import float_matrix, labels_for, matching_pair, output_for
from impls._options import accepts_loss_options
from impls.numba_options import fused_options, logits_options

FASTMATH = {"reassoc", "contract"}


def _jit(parallel=False):
    return numba.njit(cache=True, fastmath=FASTMATH, parallel=parallel)


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


_vjp_serial = _jit()(_vjp_rows)
_vjp_parallel = _jit(parallel=True)(_vjp_rows)
_fused_index = _jit()(_fused_index_rows)
_fused_dense = _jit()(_fused_dense_rows)
_logits_kernel = _jit()(_logits_rows)

# Placeholders so the one-hot and index paths of the logits kernel share one signature.
_NO_LABELS = np.zeros(1, dtype=np.int64)


def numba_serial(probs, dvalues, *, out=None):
    """Compute dL/dz = s * (d - sum(s * d)) in one serial numba kernel."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    out = output_for(out, probs, {"probs": probs, "dvalues": dvalues})
    _vjp_serial(probs, dvalues, out)
    return out


def numba_parallel(probs, dvalues, *, out=None):
    """Compute dL/dz = s * (d - sum(s * d)) with rows spread over numba's threads."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    out = output_for(out, probs, {"probs": probs, "dvalues": dvalues})
    _vjp_parallel(probs, dvalues, out)
    return out


@accepts_loss_options(fused_options)
def fused_numba(probs, labels, *, out=None):
    """Compute dL/dz = (probs - onehot) / N in one numba kernel."""
    probs = float_matrix(probs, "probs")
    labels = labels_for(labels, probs, "probs")
    out = output_for(out, probs, {"probs": probs, "labels": labels})
    if labels.ndim == 1:
        _fused_index(probs, labels, out)
    else:
        _fused_dense(probs, labels, out)
    return out


@accepts_loss_options(logits_options)
def logits_numba(logits, labels, *, out=None):
    """Compute dL/dz from logits in one numba kernel: row max, exp and sum, then write."""
    logits = float_matrix(logits, "logits")
    labels = labels_for(labels, logits, "logits")
    out = output_for(out, logits, {"logits": logits, "labels": labels})
    if labels.ndim == 1:
        _logits_kernel(logits, labels, logits[:1], True, out)
    else:
        _logits_kernel(logits, _NO_LABELS, labels, False, out)
    return out
