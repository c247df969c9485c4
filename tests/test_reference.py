"""The float64 oracles against central finite differences of each family's loss."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import impls

SHAPES = [(1, 1), (1, 4), (3, 1), (2, 2), (5, 3), (4, 7)]

# Central differences err by about h^2 / 6 * |f'''| (truncation) plus
# eps * |f| / h (rounding). The losses below have |f| and |f'''| of order 1, so
# h = 1e-5 makes each about 2e-11. A tolerance of 1e-8 leaves a wide margin and
# still rejects a wrong sign or a missing 1 / N: on these inputs either is off
# by more than 1e-2 wherever it can show (L >= 2, and N >= 2 for the 1 / N).
STEP = 1e-5
FD_TOLERANCE = 1e-8


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def central_differences(loss, z):
    """Return the gradient of `loss` at `z`, one central difference per entry."""
    gradient = np.empty_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += STEP
        down[index] -= STEP
        # The step actually taken, which rounding makes differ from 2 * STEP.
        gradient[index] = (loss(up) - loss(down)) / (up[index] - down[index])
    return gradient


def random_case(shape, seed):
    rng = np.random.default_rng([seed, *shape])
    logits = 3.0 * rng.standard_normal(shape)
    dvalues = rng.standard_normal(shape)
    labels = rng.integers(0, shape[1], size=shape[0])
    return logits, dvalues, labels


def mean_cce(z, one_hot):
    """Mean categorical cross-entropy of softmax(z) against one-hot rows."""
    return -(one_hot * log_softmax(z)).sum() / z.shape[0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_backward_matches_differences(shape, seed):
    """softmax_backward is the gradient of sum(dvalues * softmax(z))."""
    logits, dvalues, _ = random_case(shape, seed)

    expected = central_differences(lambda z: (dvalues * softmax(z)).sum(), logits)
    result = impls.reference("softmax_backward")(softmax(logits), dvalues)

    assert result.dtype == np.float64
    assert np.abs(result - expected).max() <= FD_TOLERANCE


@pytest.mark.parametrize("kind", ["index", "one_hot"])
@pytest.mark.parametrize("family", ["cce_softmax_backward", "cce_logits_backward"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cce_matches_differences(shape, seed, family, kind):
    """The CCE references are the gradient of the mean CCE of softmax(z)."""
    logits, _, indices = random_case(shape, seed)
    one_hot = np.eye(shape[1])[indices]
    labels = indices if kind == "index" else one_hot
    first = softmax(logits) if family == "cce_softmax_backward" else logits

    expected = central_differences(lambda z: mean_cce(z, one_hot), logits)
    result = impls.reference(family)(first, labels)

    assert result.dtype == np.float64
    assert np.abs(result - expected).max() <= FD_TOLERANCE


def test_differences_detect_wrong_gradient():
    """The finite-difference check rejects a gradient off by a missing 1 / N."""
    logits, _, indices = random_case((4, 3), 0)
    one_hot = np.eye(3)[indices]

    expected = central_differences(lambda z: mean_cce(z, one_hot), logits)
    wrong = softmax(logits) - one_hot

    assert np.abs(wrong - expected).max() > 1e3 * FD_TOLERANCE


def test_logits_reference_survives_large_logits():
    """Logits of 1e4 give the gradient of the same logits shifted to near 0."""
    logits, _, labels = random_case((3, 5), 2)
    reference = impls.reference("cce_logits_backward")

    shifted = reference(logits + 1e4, labels)

    assert np.isfinite(shifted).all()
    assert np.abs(shifted - reference(logits, labels)).max() <= 1e-12


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_float32_inputs_taken_exactly(family):
    """A float32 input gives the oracle of its exact values, as float64."""
    logits, dvalues, labels = random_case((4, 6), 3)
    first = (logits if family == "cce_logits_backward" else softmax(logits)).astype(
        np.float32
    )
    second = dvalues.astype(np.float32) if family == "softmax_backward" else labels
    reference = impls.reference(family)

    result = reference(first, second)
    wide_second = second.astype(np.float64) if second.dtype == np.float32 else second
    widened = reference(first.astype(np.float64), wide_second)

    assert result.dtype == np.float64
    assert np.array_equal(result, widened)


def _exact(values):
    return [[Fraction(float(v)) for v in row] for row in values]


def test_softmax_backward_correctly_rounded():
    """softmax_backward is within one ulp of s * (d - sum(s * d)) in exact arithmetic."""
    logits, dvalues, _ = random_case((3, 6), 4)
    probs = softmax(logits)

    result = impls.reference("softmax_backward")(probs, dvalues)

    for row, (s, d) in enumerate(zip(_exact(probs), _exact(dvalues))):
        row_dot = sum(a * b for a, b in zip(s, d))
        exact = np.array([float(a * (b - row_dot)) for a, b in zip(s, d)])
        assert (np.abs(result[row] - exact) <= np.spacing(np.abs(exact))).all()


def test_cce_softmax_backward_correctly_rounded():
    """cce_softmax_backward is within one ulp of (s - y) / N in exact arithmetic."""
    logits, _, labels = random_case((5, 4), 5)
    probs = softmax(logits)

    result = impls.reference("cce_softmax_backward")(probs, labels)

    for row, s in enumerate(_exact(probs)):
        y = [int(k == labels[row]) for k in range(len(s))]
        exact = np.array([float((a - b) / len(probs)) for a, b in zip(s, y)])
        assert (np.abs(result[row] - exact) <= np.spacing(np.abs(exact))).all()
