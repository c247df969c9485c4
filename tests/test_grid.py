"""The size grid and the seeded input factory shared by every tool."""

from __future__ import annotations

import numpy as np
import pytest

import impls
from softgrad.grid import (
    DEFAULT_GRID,
    GRIDS,
    Size,
    bytes_moved,
    make_inputs,
    make_logits,
    parse_size,
)

SIZES = (Size(1, 3), Size(7, 10), Size(33, 100))
DTYPES = ("float32", "float64")


def longdouble_softmax(logits):
    """Softmax of each row, computed apart from the code under test."""
    z = np.asarray(logits, dtype=np.longdouble)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float64)


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("family", impls.FAMILIES)
def test_inputs_repeat_for_a_seed(family, one_hot):
    """The same seed gives identical arrays."""
    first = make_inputs(family, Size(6, 10), seed=11, one_hot=one_hot)
    second = make_inputs(family, Size(6, 10), seed=11, one_hot=one_hot)

    for a, b in zip(first, second):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_inputs_differ_for_another_seed(family):
    """Another seed gives other values in both arguments."""
    first = make_inputs(family, Size(64, 10), seed=11)
    second = make_inputs(family, Size(64, 10), seed=12)

    for a, b in zip(first, second):
        assert not np.array_equal(a, b)


@pytest.mark.parametrize("family", impls.FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_inputs_shape_and_dtype(size, dtype, family):
    """Both arguments have the family's shapes and the requested dtype."""
    first, second = make_inputs(family, size, dtype)

    assert first.shape == (size.n, size.classes)
    assert first.dtype == np.dtype(dtype)
    if family == "softmax_backward":
        assert second.shape == (size.n, size.classes)
        assert second.dtype == np.dtype(dtype)
    else:
        assert second.shape == (size.n,)
        assert second.dtype.kind == "i"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_probabilities_are_softmax_of_logits(size, dtype):
    """Probability rows sum to 1 and are the softmax of the same seed's logits."""
    eps = np.finfo(dtype).eps  # each probability, at most 1, is rounded once
    probs, _ = make_inputs("cce_softmax_backward", size, dtype, seed=5)
    logits = make_logits(size, dtype, seed=5)

    assert (probs >= 0).all()
    row_sums = probs.sum(axis=1, dtype=np.float64)
    assert np.abs(row_sums - 1).max() <= size.classes * eps
    assert np.abs(probs - longdouble_softmax(logits)).max() <= 4 * eps


def test_softmax_backward_probabilities_match():
    """softmax_backward gets the same probabilities as cce_softmax_backward."""
    probs, _ = make_inputs("softmax_backward", Size(9, 10), seed=5)
    same, _ = make_inputs("cce_softmax_backward", Size(9, 10), seed=5)

    assert np.array_equal(probs, same)


def test_logits_inputs_are_the_logits():
    """cce_logits_backward gets make_logits' array for the same seed."""
    logits, _ = make_inputs("cce_logits_backward", Size(9, 10), "float32", seed=5)

    assert np.array_equal(logits, make_logits(Size(9, 10), "float32", seed=5))


@pytest.mark.parametrize("size", [Size(1, 1), Size(500, 3), Size(200, 1000)], ids=str)
def test_labels_in_range(size):
    """Index labels lie in [0, L) and, in a large batch, reach both ends."""
    _, labels = make_inputs("cce_softmax_backward", size)

    assert labels.min() >= 0
    assert labels.max() < size.classes
    if size.n >= 100 * size.classes:
        assert set(np.unique(labels)) == set(range(size.classes))


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_hot_rows(dtype):
    """One-hot labels have a single 1 per row, at the index label's class."""
    size = Size(40, 10)
    _, indices = make_inputs("cce_logits_backward", size, dtype, seed=3)
    _, one_hot = make_inputs("cce_logits_backward", size, dtype, seed=3, one_hot=True)

    assert one_hot.shape == (size.n, size.classes)
    assert one_hot.dtype == np.dtype(dtype)
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    assert (one_hot.sum(axis=1) == 1).all()
    assert np.array_equal(one_hot.argmax(axis=1), indices)


def test_unknown_family_rejected():
    """make_inputs raises an error naming an unknown family."""
    with pytest.raises(ValueError, match="`softmax_forward`"):
        make_inputs("softmax_forward", Size(2, 3))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256x1000", Size(256, 1000)),
        ("1x3", Size(1, 3)),
        ("4X50257", Size(4, 50257)),
        ("64*128256", Size(64, 128256)),
    ],
)
def test_parse_size_accepts(text, expected):
    """parse_size reads "NxL" into a Size."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "256",
        "x1000",
        "256x",
        "256x1000x3",
        "axb",
        "2.5x10",
        "0x10",
        "256x0",
        "-1x10",
    ],
)
def test_parse_size_rejects(text):
    """parse_size raises a ValueError quoting the malformed text."""
    with pytest.raises(ValueError) as raised:
        parse_size(text)

    assert repr(text) in str(raised.value)


def test_size_text_round_trip():
    """str(Size) gives the text that parse_size reads back."""
    size = Size(256, 1000)

    assert str(size) == "256x1000"
    assert parse_size(str(size)) == size


def test_default_grid_classes():
    """The default grid covers the textbook, MNIST, CIFAR-100, ImageNet and GPT-2."""
    classes = {size.classes for size in DEFAULT_GRID}

    assert {3, 10, 100, 1000, 50257} <= classes


def test_default_grid_batches():
    """The default grid runs from a single sample to at least 2048 rows."""
    batches = [size.n for size in DEFAULT_GRID]

    assert min(batches) == 1
    assert max(batches) >= 2048


@pytest.mark.parametrize("grid", GRIDS)
def test_grid_sizes_unique(grid):
    """No grid lists a size twice."""
    sizes = GRIDS[grid]

    assert len(set(sizes)) == len(sizes)


def test_bytes_moved_by_hand():
    """bytes_moved counts each input once and the output once."""
    size = Size(4, 5)

    # probs, dvalues and the output: 3 arrays of 4 * 5 float32.
    assert bytes_moved("softmax_backward", size, "float32") == 3 * 20 * 4
    # probs and the output in float64, plus 4 int64 labels.
    assert bytes_moved("cce_softmax_backward", size, "float64") == 2 * 20 * 8 + 4 * 8
    assert bytes_moved("cce_logits_backward", size, "float32") == 2 * 20 * 4 + 4 * 8
