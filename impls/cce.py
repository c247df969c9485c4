"""Gradient of mean categorical cross-entropy through softmax, in numpy.

The composed paths follow the textbook: the CCE backward gives dL/ds =
-y / s / N, then a softmax backward turns it into dL/dz. The fused paths use
the closed form dL/dz = (s - y) / N, which holds when each label row sums to 1.
Every backend also takes PyTorch's cross-entropy options (see impls._options);
they are computed on a separate path, so the default path stays as it is.
"""

from __future__ import annotations

import numpy as np

from impls._checks import float_matrix, labels_for, output_for
from impls._options import LossTerms, accepts_loss_options, loss_terms
from impls.jacobian import looped_jacobian
from impls.vjp import numpy_vjp


def _one_hot(labels, like):
    """Return labels as dense (N, L) targets in the dtype of `like`."""
    if labels.ndim == 2:
        return labels
    targets = np.zeros(like.shape, dtype=like.dtype)
    np.put_along_axis(targets, labels[:, np.newaxis], 1, axis=1)
    return targets


def cce_backward(probs, targets):
    """Return dL/ds of the mean CCE: -y / s / N.

    A zero target adds nothing to the loss, so its entry is 0 even where s is 0
    (an underflowed probability), where -y / s alone would give 0 / 0 = NaN.

    NOTE: a zero probability at the label class still gives -inf here and NaN
    after the softmax backward, and so does a float32 one below about 3e-39,
    because -1 / s overflows. Only the fused closed form is exact there.
    """
    gradient = np.zeros_like(probs)
    np.divide(targets, probs, out=gradient, where=targets != 0)
    gradient /= -probs.shape[0]
    return gradient


def loss_coefficients(terms: LossTerms, dtype) -> np.ndarray:
    """Return C of shape (N, L): the reduced loss is sum(C * -log(s)).

    Row n holds sample n's smoothed, weighted target times the reduction's
    scale, and zeros when the sample is ignored.
    """
    n, classes = terms.kept.shape[0], terms.weight.shape[0]
    uniform = terms.smoothing / classes
    row_scale = np.where(terms.kept, terms.scale, 0.0)
    if terms.labels.ndim == 2:
        targets = (1.0 - terms.smoothing) * terms.labels + uniform
        coefficients = targets * terms.weight * row_scale[:, np.newaxis]
    else:
        coefficients = np.outer(row_scale * uniform, terms.weight)
        label_weight = terms.weight[terms.labels]
        rows = np.arange(n)
        coefficients[rows, terms.labels] += (
            row_scale * (1.0 - terms.smoothing) * label_weight
        )
    return coefficients.astype(dtype, copy=False)


def _checked(scores, labels, name, options):
    scores = float_matrix(scores, name)
    return scores, loss_terms(scores, labels, name, options)


def _fused_from_coefficients(probs, coefficients, out):
    """Write dL/dz = s * sum_k(C[:, k]) - C into `out`."""
    np.multiply(probs, coefficients.sum(axis=1, keepdims=True), out=out)
    out -= coefficients
    return out


def _option_dvalues(probs, terms):
    """Return dL/ds = -C / s, with 0 wherever C is 0, as cce_backward does."""
    coefficients = loss_coefficients(terms, probs.dtype)
    dvalues = np.zeros_like(probs)
    np.divide(coefficients, probs, out=dvalues, where=coefficients != 0)
    return np.negative(dvalues, out=dvalues)


def _composed_looped_options(probs, labels, options, *, out=None):
    probs, terms = _checked(probs, labels, "probs", options)
    out = output_for(out, probs, {"probs": probs, "labels": np.asarray(labels)})
    return looped_jacobian(probs, _option_dvalues(probs, terms), out=out)


def _composed_vjp_options(probs, labels, options, *, out=None):
    probs, terms = _checked(probs, labels, "probs", options)
    out = output_for(out, probs, {"probs": probs, "labels": np.asarray(labels)})
    return numpy_vjp(probs, _option_dvalues(probs, terms), out=out)


def _fused_numpy_options(probs, labels, options, *, out=None):
    probs, terms = _checked(probs, labels, "probs", options)
    out = output_for(out, probs, {"probs": probs, "labels": np.asarray(labels)})
    coefficients = loss_coefficients(terms, probs.dtype)
    return _fused_from_coefficients(probs, coefficients, out)


def _composed_looped_logits_options(logits, labels, options, *, out=None):
    logits, terms = _checked(logits, labels, "logits", options)
    out = output_for(out, logits, {"logits": logits, "labels": np.asarray(labels)})
    probs = stable_softmax(logits)
    return looped_jacobian(probs, _option_dvalues(probs, terms), out=out)


def _logits_numpy_options(logits, labels, options, *, out=None):
    logits, terms = _checked(logits, labels, "logits", options)
    out = output_for(out, logits, {"logits": logits, "labels": np.asarray(labels)})
    coefficients = loss_coefficients(terms, logits.dtype)
    probs = stable_softmax(logits, out=out)
    return _fused_from_coefficients(probs, coefficients, out)


@accepts_loss_options(_composed_looped_options)
def composed_looped(probs, labels, *, out=None):
    """Compute dL/dz as the textbook does: CCE backward, then the looped Jacobian."""
    probs = float_matrix(probs, "probs")
    labels = labels_for(labels, probs, "probs")
    out = output_for(
        out, probs, {"probs": probs, "labels": labels}, may_alias=("probs", "labels")
    )
    dvalues = cce_backward(probs, _one_hot(labels, probs))
    return looped_jacobian(probs, dvalues, out=out)


@accepts_loss_options(_composed_vjp_options)
def composed_vjp(probs, labels, *, out=None):
    """Compute dL/dz as CCE backward, then the Jacobian-free softmax backward."""
    probs = float_matrix(probs, "probs")
    labels = labels_for(labels, probs, "probs")
    # numpy_vjp reads `probs` again after it writes `out`, so `out` may not be `probs`.
    out = output_for(
        out, probs, {"probs": probs, "labels": labels}, may_alias=("labels",)
    )
    dvalues = cce_backward(probs, _one_hot(labels, probs))
    return numpy_vjp(probs, dvalues, out=out)


def _subtract_labels(probs, labels, out):
    """Write (probs - y) / N into `out`, which already contains probs / N."""
    n = probs.shape[0]
    if labels.ndim == 1:
        out[np.arange(n), labels] -= probs.dtype.type(1) / n
    else:
        out -= labels / probs.dtype.type(n)
    return out


@accepts_loss_options(_fused_numpy_options)
def fused_numpy(probs, labels, *, out=None):
    """Compute dL/dz in closed form: (probs - onehot) / N."""
    probs = float_matrix(probs, "probs")
    labels = labels_for(labels, probs, "probs")
    # The first write replaces all of `out`, so `out` may be `probs` but not `labels`.
    out = output_for(
        out, probs, {"probs": probs, "labels": labels}, may_alias=("probs",)
    )
    np.divide(probs, probs.dtype.type(probs.shape[0]), out=out)
    return _subtract_labels(probs, labels, out)


def stable_softmax(logits, out=None):
    """Return softmax(logits) row by row, shifted by each row's max so exp cannot overflow."""
    shifted = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


@accepts_loss_options(_composed_looped_logits_options)
def composed_looped_logits(logits, labels, *, out=None):
    """Compute dL/dz from logits the textbook way: softmax, CCE backward, looped Jacobian."""
    logits = float_matrix(logits, "logits")
    labels = labels_for(labels, logits, "logits")
    out = output_for(
        out,
        logits,
        {"logits": logits, "labels": labels},
        may_alias=("logits", "labels"),
    )
    probs = stable_softmax(logits)
    dvalues = cce_backward(probs, _one_hot(labels, probs))
    return looped_jacobian(probs, dvalues, out=out)


@accepts_loss_options(_logits_numpy_options)
def logits_numpy(logits, labels, *, out=None):
    """Compute dL/dz from logits: a stable softmax, then (s - y) / N in place."""
    logits = float_matrix(logits, "logits")
    labels = labels_for(labels, logits, "logits")
    # `out` may be `logits` but not one-hot `labels`, because the softmax is written
    # into `out` before `labels` are read.
    out = output_for(
        out, logits, {"logits": logits, "labels": labels}, may_alias=("logits",)
    )
    stable_softmax(logits, out=out)
    out /= logits.dtype.type(logits.shape[0])
    return _subtract_labels(out, labels, out)
