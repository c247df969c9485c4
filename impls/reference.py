"""Float64 oracles for each family, computed in extended precision.

They use the closed forms, evaluated in numpy's longdouble and rounded once to
float64. The tests check them against central finite differences of the loss
and, for the cross-entropy options, against PyTorch where it is installed.
"""

from __future__ import annotations

import numpy as np

from impls._checks import float_matrix, matching_pair
from impls._options import CheckedLabels, LossOptions, check_options, validate_labels


def softmax_backward(probs, dvalues):
    """Return dL/dz = s * (d - sum(s * d)) as float64."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    s = probs.astype(np.longdouble)
    d = dvalues.astype(np.longdouble)
    row_dot = (s * d).sum(axis=1, keepdims=True)
    return (s * (d - row_dot)).astype(np.float64)


def _sample_coefficients(checked: CheckedLabels, shape, options: LossOptions):
    """Return A of shape (N, L) with sample n's loss = sum_c A[n, c] * -log s[n, c],
    and the denominator of the "mean" reduction, both in longdouble.

    The terms follow PyTorch's cross_entropy: with class indices, (1 - eps)
    times the weighted NLL plus eps / L times the weighted sum of -log s over
    all classes, and a mean over the summed weight of the kept labels; with
    one-hot rows (class probabilities), the smoothed target (1 - eps) y + eps / L
    weighted per class, and a mean over N.
    """
    n, classes = shape
    weight = np.ones(classes, dtype=np.longdouble)
    if checked.weight is not None:
        weight = checked.weight.astype(np.longdouble)
    eps = np.longdouble(options.label_smoothing)
    if checked.labels.ndim == 2:
        smoothed = (1 - eps) * checked.labels.astype(np.longdouble) + eps / classes
        return smoothed * weight, np.longdouble(n)

    labels = checked.labels
    nll = np.zeros(shape, dtype=np.longdouble)
    nll[np.arange(n), labels] = weight[labels]
    smoothing = np.broadcast_to(weight, shape)
    coefficients = (1 - eps) * nll + (eps / classes) * smoothing
    coefficients[~checked.kept] = 0
    return coefficients, weight[labels[checked.kept]].sum()


def _checked(scores, labels, name, options):
    scores = float_matrix(scores, name)
    options = check_options(**options)
    return scores, validate_labels(scores, labels, name, options), options


def _gradient(s, checked, options):
    """Return dL/dz = s * sum_c(A[n, c]) - A[n] of the reduced loss, as float64."""
    coefficients, denominator = _sample_coefficients(checked, s.shape, options)
    if options.reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            coefficients = coefficients / denominator
        # An ignored sample adds nothing, even when the mean is undefined.
        coefficients[~checked.kept] = 0
    gradient = s * coefficients.sum(axis=1, keepdims=True) - coefficients
    return gradient.astype(np.float64)


def cce_softmax_backward(probs, labels, **options):
    """Return dL/dz of the CCE (the mean by default) as float64.

    Takes the options of PyTorch's cross_entropy: reduction, weight,
    ignore_index and label_smoothing.
    """
    probs, checked, options = _checked(probs, labels, "probs", options)
    return _gradient(probs.astype(np.longdouble), checked, options)


def softmax(logits):
    """Return softmax(logits) in longdouble, shifted by the row max."""
    z = np.asarray(logits).astype(np.longdouble)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits):
    """Return log(softmax(logits)) in longdouble, computed without exp overflow."""
    z = np.asarray(logits).astype(np.longdouble)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cce_logits_backward(logits, labels, **options):
    """Return dL/dz of the CCE (the mean by default) from logits, as float64.

    Takes the same options as `cce_softmax_backward`. A logit of -inf masks its
    class, whose probability is then 0. A row of -inf only has no softmax
    (0 / 0), so its gradient row is NaN, as it is from every backend. The row
    is not rejected, because finding it takes a pass over the whole array.
    """
    logits, checked, options = _checked(logits, labels, "logits", options)
    return _gradient(softmax(logits), checked, options)


def cross_entropy(logits, labels, **options):
    """Return PyTorch's cross_entropy of `logits` as float64: a scalar, or the
    per-sample losses of shape (N,) for reduction="none".

    The mean over samples that are all ignored, or over kept samples whose
    weights sum to 0, is NaN, as in PyTorch.
    """
    logits, checked, options = _checked(logits, labels, "logits", options)
    coefficients, denominator = _sample_coefficients(checked, logits.shape, options)
    per_sample = -(coefficients * log_softmax(logits)).sum(axis=1)
    if options.reduction == "none":
        return per_sample.astype(np.float64)
    total = per_sample.sum()
    if options.reduction == "sum":
        return np.float64(total)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(total / denominator)


REFERENCES = {
    "softmax_backward": softmax_backward,
    "cce_softmax_backward": cce_softmax_backward,
    "cce_logits_backward": cce_logits_backward,
}
