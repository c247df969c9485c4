"""Tests of the input distributions ("normal", "peaked", "large"): every backend
matches the reference on each, and each has the shape it promises."""

from __future__ import annotations

import numpy as np
import pytest

import impls
from softgrad import grid
from softgrad.cases import TOLERANCE, relative_error
from softgrad.grid import DISTRIBUTIONS, DTYPES, SEED, Size, make_inputs, make_logits

SIZES = (Size(7, grid.TEXTBOOK), Size(64, grid.MNIST), Size(16, 300))

# The composed paths compute dL/ds = -y / s, and in the saturated rows of
# "large" inputs s underflows to 0, so they return NaN there.
COMPOSED = {"composed_looped", "composed_vjp"}


def _cases():
    cases = []
    for backend in impls.backends():
        marks = []
        if backend.name in COMPOSED:
            marks = [
                pytest.mark.xfail(
                    strict=True,
                    reason="composed path divides by probabilities that underflow "
                    "to 0 in saturated rows",
                )
            ]
        for distribution in DISTRIBUTIONS:
            case_marks = marks if distribution == "large" else []
            cases.append(
                pytest.param(
                    backend,
                    distribution,
                    id=f"{backend.key}-{distribution}",
                    marks=case_marks,
                )
            )
    return cases


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "distribution"), _cases())
def test_backend_matches_reference(backend, distribution, dtype, size):
    """Every backend gives the reference gradient on every input distribution."""
    if not backend.available:
        pytest.skip(backend.reason)
    arrays = make_inputs(backend.family, size, dtype, distribution=distribution)
    expected = impls.reference(backend.family)(*arrays)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        result = backend(*arrays)
    assert relative_error(result, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("family", ["cce_softmax_backward", "cce_logits_backward"])
def test_composed_handles_large_offsets(family):
    """The composed paths are right on the unsaturated rows of "large" inputs."""
    size = Size(64, grid.MNIST)
    probs_or_logits, labels = make_inputs(family, size, distribution="large")
    smooth = np.arange(size.n) % 2 == 0  # no jump: no probability underflows
    arrays = (probs_or_logits[smooth], labels[smooth])
    expected = impls.reference(family)(*arrays)
    result = impls.get(family, "composed_looped")(*arrays)
    assert relative_error(result, expected) <= TOLERANCE["float64"]


def test_normal_is_default_stream():
    """ "normal" logits are 3 standard normals from the size-seeded generator."""
    size = Size(32, 10)
    rng = np.random.default_rng(np.random.SeedSequence([SEED, size.n, size.classes]))
    expected = 3.0 * rng.standard_normal((size.n, size.classes))
    assert np.array_equal(make_logits(size), expected)
    assert np.array_equal(make_logits(size, distribution="normal"), expected)


def test_inputs_default_to_normal():
    """make_inputs without a distribution gives the "normal" inputs."""
    size = Size(16, 5)
    for family in impls.FAMILIES:
        default = make_inputs(family, size)
        normal = make_inputs(family, size, distribution="normal")
        for first, second in zip(default, normal):
            assert np.array_equal(first, second)


def test_large_logits_bounded():
    """ "large" logits stay within +-1e4 and every row is far from zero."""
    logits = make_logits(Size(256, 100), distribution="large")
    assert np.abs(logits).max() <= 1e4
    assert np.abs(logits).max() > 9e3
    assert np.abs(logits).max(axis=1).min() > 709  # exp(709.8) overflows float64


def test_large_logits_break_naive_softmax():
    """A softmax without the max shift returns NaN on every even "large" row."""
    logits = make_logits(Size(64, 10), distribution="large")[::2]
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.isnan(naive).any(axis=1).all()


@pytest.mark.parametrize("classes", [2, 10, 300])
def test_large_odd_rows_saturate(classes):
    """On odd "large" rows one class takes all and the others underflow to 0."""
    probs = grid.softmax64(make_logits(Size(64, classes), distribution="large"))
    assert np.all(probs[1::2].max(axis=1) == 1.0)
    assert np.all(np.sort(probs[1::2], axis=1)[:, -2] == 0.0)


def test_large_even_rows_smooth():
    """On even "large" rows no probability underflows to 0."""
    probs = grid.softmax64(make_logits(Size(64, 10), distribution="large"))
    assert np.all(probs[::2] > 0)


def test_peaked_digits_rows_come_from_network():
    """For L = 10, "peaked" rows and labels are rows of the stored network output."""
    stored_logits, stored_labels = grid.digits_rows()
    logits, labels = make_inputs(
        "cce_logits_backward", Size(50, 10), distribution="peaked"
    )
    for row, label in zip(logits, labels):
        matches = np.flatnonzero((stored_logits == row).all(axis=1))
        assert matches.size > 0
        assert label in stored_labels[matches]


def _confidence(logits):
    return np.median(grid.softmax64(logits).max(axis=1))


@pytest.mark.parametrize("classes", [3, 100, 1000])
def test_peaked_synthetic_matches_network(classes):
    """Synthetic "peaked" rows are as confident and as right as the network's."""
    stored_logits, stored_labels = grid.digits_rows()
    stored_accuracy = (stored_logits.argmax(axis=1) == stored_labels).mean()
    logits, labels = make_inputs(
        "cce_logits_backward", Size(4096, classes), distribution="peaked"
    )
    accuracy = (logits.argmax(axis=1) == labels).mean()
    assert abs(_confidence(logits) - _confidence(stored_logits)) < 0.01
    assert abs(accuracy - stored_accuracy) < 0.02


def test_peaked_rows_confident():
    """The stored digits rows are peaked: the median top probability exceeds 0.95."""
    assert _confidence(grid.digits_rows()[0]) > 0.95


def test_peaked_labels_one_hot_agree():
    """One-hot "peaked" labels mark the same classes as the index labels."""
    size = Size(40, 100)
    _, labels = make_inputs("cce_logits_backward", size, distribution="peaked")
    _, rows = make_inputs(
        "cce_logits_backward", size, distribution="peaked", one_hot=True
    )
    assert np.array_equal(rows.argmax(axis=1), labels)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_distribution_seeded(distribution):
    """Each distribution repeats with one seed and changes with another."""
    size = Size(8, 20)
    first = make_logits(size, seed=1, distribution=distribution)
    again = make_logits(size, seed=1, distribution=distribution)
    other = make_logits(size, seed=2, distribution=distribution)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_unknown_distribution_rejected():
    """An unknown distribution is rejected, naming the argument."""
    with pytest.raises(ValueError, match="`distribution`"):
        make_logits(Size(2, 3), distribution="uniform")


def test_stored_digits_rows_reproduce():
    """The stored digits logits are what the default training produces."""
    pytest.importorskip(
        "sklearn", reason="scikit-learn provides the digits data set to train on"
    )
    from softgrad.train import digits_logits

    logits, labels = digits_logits()
    stored_logits, stored_labels = grid.digits_rows()
    np.testing.assert_allclose(stored_logits, logits, rtol=1e-5, atol=1e-5)
    assert np.array_equal(stored_labels, labels)
