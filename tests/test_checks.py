"""The input checks in impls._checks that every backend shares."""

from __future__ import annotations

import numpy as np
import pytest

from impls._checks import (
    InputError,
    float_matrix,
    labels_for,
    matching_pair,
    output_for,
)


def test_input_error_is_value_error():
    """InputError can be caught as ValueError, as the backend API promises."""
    assert issubclass(InputError, ValueError)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_matrix_passes_array_through(dtype):
    """A valid (N, L) float array is returned as is, without a copy."""
    array = np.ones((3, 4), dtype=dtype)

    assert float_matrix(array, "probs") is array


def test_float_matrix_accepts_nested_lists():
    """Nested lists of floats become a float64 array."""
    result = float_matrix([[0.25, 0.75], [0.5, 0.5]], "probs")

    assert result.dtype == np.float64
    assert result.shape == (2, 2)


@pytest.mark.parametrize(
    ("array", "fragments"),
    [
        (np.ones(4), ("`logits`", "1-D", "(4,)")),
        (np.float64(1.0), ("`logits`", "0-D", "()")),
        (np.ones((2, 3, 4)), ("`logits`", "3-D", "(2, 3, 4)")),
        (np.ones((2, 3), np.float16), ("`logits`", "float16")),
        (np.ones((2, 3), np.complex128), ("`logits`", "complex128")),
        (np.ones((2, 3), bool), ("`logits`", "bool")),
        (np.ones((0, 3)), ("`logits`", "(0, 3)", "N >= 1")),
        (np.ones((3, 0)), ("`logits`", "(3, 0)", "L >= 1")),
    ],
    ids=["1d", "0d", "3d", "float16", "complex", "bool", "no_rows", "no_classes"],
)
def test_float_matrix_rejects(array, fragments):
    """An array that is not a non-empty float32/float64 matrix is named and shown."""
    with pytest.raises(InputError) as raised:
        float_matrix(array, "logits")

    for fragment in fragments:
        assert fragment in str(raised.value)


def test_matching_pair_rejects_other_shape():
    """A second array of another shape is rejected, with both shapes shown."""
    with pytest.raises(InputError) as raised:
        matching_pair(np.ones((2, 3)), np.ones((3, 2)), ("probs", "dvalues"))

    message = str(raised.value)
    assert "`dvalues`" in message
    assert "(3, 2)" in message
    assert "(2, 3)" in message


def test_matching_pair_rejects_other_dtype():
    """A second array of another dtype is rejected, with both dtypes shown."""
    first = np.ones((2, 3), np.float32)

    with pytest.raises(InputError) as raised:
        matching_pair(first, np.ones((2, 3)), ("probs", "dvalues"))

    message = str(raised.value)
    assert "`dvalues`" in message
    assert "float64" in message
    assert "float32" in message


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint16", "int64"])
def test_index_labels_become_int64(dtype):
    """Integer class indices of any width come back as int64 with equal values."""
    labels = np.array([0, 2, 1], dtype=dtype)

    result = labels_for(labels, np.ones((3, 3)), "probs")

    assert result.dtype == np.int64
    assert np.array_equal(result, labels)


def test_index_labels_at_both_ends_accepted():
    """Class indices 0 and L - 1 are valid."""
    labels = np.array([0, 4])

    assert np.array_equal(labels_for(labels, np.ones((2, 5)), "probs"), labels)


def test_index_labels_not_copied():
    """int64 class indices are returned without a copy."""
    labels = np.array([1, 0], dtype=np.int64)

    assert labels_for(labels, np.ones((2, 2)), "probs") is labels


@pytest.mark.parametrize("label_dtype", ["bool", "int64", "float64", "float32"])
def test_one_hot_labels_take_scores_dtype(label_dtype):
    """One-hot rows of any numeric dtype are converted to the scores' dtype."""
    one_hot = np.eye(3)[[2, 0]].astype(label_dtype)
    scores = np.ones((2, 3), np.float32)

    result = labels_for(one_hot, scores, "logits")

    assert result.dtype == np.float32
    assert np.array_equal(result, np.eye(3)[[2, 0]])


def test_index_labels_wrong_length_rejected():
    """Labels without one entry per row are rejected, with both counts shown."""
    with pytest.raises(InputError) as raised:
        labels_for(np.array([0, 1, 2]), np.ones((2, 4)), "probs")

    message = str(raised.value)
    assert "`labels`" in message
    assert "3 entries" in message
    assert "(2)" in message


def test_labels_of_unsigned_type_too_large_rejected():
    """An unsigned label past L - 1 is rejected with its value."""
    with pytest.raises(InputError, match="class index 200"):
        labels_for(np.array([200, 1], np.uint8), np.ones((2, 4)), "probs")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_output_for_allocates(dtype):
    """Without `out`, a new array of the scores' shape and dtype is returned."""
    like = np.ones((3, 4), dtype)

    out = output_for(None, like, {"probs": like})

    assert out.shape == like.shape
    assert out.dtype == like.dtype
    assert not np.may_share_memory(out, like)


def test_output_for_returns_given_buffer():
    """A valid `out` is returned as is, even when not C-contiguous."""
    like = np.ones((3, 4))
    out = np.empty((4, 3)).T

    assert output_for(out, like, {"probs": like}) is out


def test_output_for_rejects_partial_overlap():
    """An `out` that shares only part of an input's memory is rejected."""
    storage = np.zeros((4, 3))
    first = storage[:3]
    out = storage[1:]

    with pytest.raises(InputError, match="`out` overlaps `logits`"):
        output_for(out, first, {"logits": first})


def test_output_for_accepts_disjoint_views():
    """Two halves of one buffer do not overlap, so one may be the output."""
    storage = np.zeros((4, 3))
    first, out = storage[:2], storage[2:]

    assert output_for(out, first, {"logits": first}) is out


def test_output_for_rejects_read_only():
    """A read-only `out` is rejected."""
    like = np.ones((2, 2))
    out = np.empty((2, 2))
    out.flags.writeable = False

    with pytest.raises(InputError, match="`out` is read-only"):
        output_for(out, like, {"probs": like})


def test_output_for_names_expected_shape_and_dtype():
    """A wrong `out` gets a message with its shape and dtype and the expected ones."""
    like = np.ones((2, 3))

    with pytest.raises(InputError) as raised:
        output_for(np.empty((3, 2), np.float32), like, {"probs": like})

    message = str(raised.value)
    assert "`out`" in message
    assert "(3, 2) and dtype float32" in message
    assert "(2, 3) and dtype float64" in message


def test_output_for_accepts_allowed_alias():
    """`out` may be an input named in `may_alias`, the very same array."""
    dvalues = np.ones((3, 4))

    out = output_for(dvalues, dvalues, {"dvalues": dvalues}, may_alias=("dvalues",))

    assert out is dvalues


def test_output_for_rejects_alias_not_allowed():
    """`out` may not be an input left out of `may_alias`."""
    probs, dvalues = np.ones((3, 4)), np.ones((3, 4))
    inputs = {"probs": probs, "dvalues": dvalues}

    with pytest.raises(InputError, match="`out` overlaps `probs`; pass a separate"):
        output_for(probs, probs, inputs, may_alias=("dvalues",))


@pytest.mark.parametrize(
    "view",
    [lambda a: a[::-1], lambda a: a.T, lambda a: a[:, ::-1]],
    ids=["rows_reversed", "transposed", "columns_reversed"],
)
def test_output_for_rejects_other_view_of_allowed(view):
    """Another view of an aliasable input's memory is rejected, naming the input."""
    dvalues = np.ones((3, 3))

    with pytest.raises(InputError, match="without being the same array"):
        output_for(view(dvalues), dvalues, {"dvalues": dvalues}, may_alias=("dvalues",))
