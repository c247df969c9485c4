"""Float64 oracles for each family, computed in extended precision.

They use the closed forms, evaluated in numpy's longdouble and rounded once to
float64. The tests check them against central finite differences of the loss.
"""

from __future__ import annotations

import numpy as np

from impls._checks import float_matrix, labels_for, matching_pair


def _targets(labels, shape):
    if labels.ndim == 2:
        return labels.astype(np.longdouble)
    targets = np.zeros(shape, dtype=np.longdouble)
    targets[np.arange(shape[0]), labels] = 1
    return targets


def softmax_backward(probs, dvalues):
    """Return dL/dz = s * (d - sum(s * d)) as float64."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    s = probs.astype(np.longdouble)
    d = dvalues.astype(np.longdouble)
    row_dot = (s * d).sum(axis=1, keepdims=True)
    return (s * (d - row_dot)).astype(np.float64)


def cce_softmax_backward(probs, labels):
    """Return dL/dz = (s - y) / N of the mean CCE as float64."""
    probs = float_matrix(probs, "probs")
    labels = labels_for(labels, probs, "probs")
    s = probs.astype(np.longdouble)
    return ((s - _targets(labels, s.shape)) / s.shape[0]).astype(np.float64)


def softmax(logits):
    """Return softmax(logits) in longdouble, shifted by the row max."""
    z = np.asarray(logits).astype(np.longdouble)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cce_logits_backward(logits, labels):
    """Return dL/dz = (softmax(z) - y) / N of the mean CCE as float64.

    A logit of -inf masks its class, whose probability is then 0. A row of -inf
    only has no softmax (0 / 0), so its gradient row is NaN, as it is from every
    backend. The row is not rejected, because finding it takes a pass over the
    whole array.
    """
    logits = float_matrix(logits, "logits")
    labels = labels_for(labels, logits, "logits")
    s = softmax(logits)
    return ((s - _targets(labels, s.shape)) / s.shape[0]).astype(np.float64)


REFERENCES = {
    "softmax_backward": softmax_backward,
    "cce_softmax_backward": cce_softmax_backward,
    "cce_logits_backward": cce_logits_backward,
}
