"""Numba kernels for the CCE backends' option path: weight, ignore_index,
label smoothing and reduction, from probabilities or from logits.

The default path keeps its own kernels in impls.numba_kernels; these run only
when an option differs from its default or a label equals ignore_index.
"""

from __future__ import annotations

import numba
import numpy as np

from impls._checks import float_matrix, output_for
from impls._options import loss_terms

# The same fastmath flags as impls.numba_kernels: reassociation lets LLVM
# vectorize the row sums, while NaN keeps its IEEE meaning.
_option_kernel = numba.njit(cache=True, fastmath={"reassoc", "contract"})


@_option_kernel
def _softmax_row(logits, row, out):
    """Write softmax(logits[row]) into out[row], shifted by the row max."""
    row_max = logits[row, 0]
    for k in range(1, logits.shape[1]):
        row_max = max(row_max, logits[row, k])
    total = 0.0
    for k in range(logits.shape[1]):
        shifted = np.exp(logits[row, k] - row_max)
        out[row, k] = shifted
        total += shifted
    for k in range(logits.shape[1]):
        out[row, k] /= total


@_option_kernel
def _index_rows(scores, labels, kept, weight, scale, smoothing, from_logits, out):
    classes = scores.shape[1]
    uniform = smoothing / classes
    weight_sum = 0.0
    for k in range(classes):
        weight_sum += weight[k]
    for row in range(scores.shape[0]):
        if not kept[row]:
            for k in range(classes):
                out[row, k] = 0
            continue
        if from_logits:
            _softmax_row(scores, row, out)
        label = labels[row]
        label_term = scale * (1.0 - smoothing) * weight[label]
        factor = label_term + scale * uniform * weight_sum
        for k in range(classes):
            probability = out[row, k] if from_logits else scores[row, k]
            out[row, k] = probability * factor - scale * uniform * weight[k]
        out[row, label] -= label_term


@_option_kernel
def _dense_rows(scores, targets, weight, scale, smoothing, from_logits, out):
    classes = scores.shape[1]
    uniform = smoothing / classes
    for row in range(scores.shape[0]):
        if from_logits:
            _softmax_row(scores, row, out)
        factor = 0.0
        for k in range(classes):
            factor += weight[k] * ((1.0 - smoothing) * targets[row, k] + uniform)
        factor *= scale
        for k in range(classes):
            probability = out[row, k] if from_logits else scores[row, k]
            target = scale * weight[k] * ((1.0 - smoothing) * targets[row, k] + uniform)
            out[row, k] = probability * factor - target


def _run(scores, labels, options, out, name, from_logits):
    scores = float_matrix(scores, name)
    terms = loss_terms(scores, labels, name, options)
    out = output_for(out, scores, {name: scores, "labels": np.asarray(labels)})
    if terms.labels.ndim == 1:
        _index_rows(
            scores,
            terms.labels,
            terms.kept,
            terms.weight,
            terms.scale,
            terms.smoothing,
            from_logits,
            out,
        )
    else:
        _dense_rows(
            scores,
            terms.labels,
            terms.weight,
            terms.scale,
            terms.smoothing,
            from_logits,
            out,
        )
    return out


def fused_options(probs, labels, options, *, out=None):
    """Compute dL/dz from probabilities with the cross-entropy options."""
    return _run(probs, labels, options, out, "probs", from_logits=False)


def logits_options(logits, labels, options, *, out=None):
    """Compute dL/dz from logits with the cross-entropy options: softmax inside."""
    return _run(logits, labels, options, out, "logits", from_logits=True)
