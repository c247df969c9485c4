"""Input checks shared by every backend, so that all of them reject bad input alike.

Only checks that cost O(N) or less live here, because they run inside every call.
Checks that read the whole array (finite values, one-hot rows) belong to the
caller and run once before timing.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class InputError(ValueError):
    """Invalid argument given to a backend: wrong shape, dtype or value."""


class LabelRangeError(InputError):
    """A class index outside [0, L), which the CCE options may still accept as ignored."""


def float_matrix(array, name: str) -> np.ndarray:
    """Return `array` as an (N, L) float32 or float64 array with N, L >= 1."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise InputError(
            f"`{name}` must be a 2-D array of shape (N, L), "
            f"got a {array.ndim}-D array of shape {array.shape}"
        )
    if array.dtype not in FLOAT_DTYPES:
        raise InputError(
            f"`{name}` must have dtype float32 or float64, got {array.dtype}"
        )
    n, classes = array.shape
    if n == 0:
        raise InputError(
            f"`{name}` has shape {array.shape}: expected at least one sample (N >= 1)"
        )
    if classes == 0:
        raise InputError(
            f"`{name}` has shape {array.shape}: expected at least one class (L >= 1)"
        )
    return array


def matching_pair(first, second, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    """Check two float matrices that must agree in shape and dtype."""
    first = float_matrix(first, names[0])
    second = float_matrix(second, names[1])
    if second.shape != first.shape:
        raise InputError(
            f"`{names[1]}` has shape {second.shape}, expected the shape of "
            f"`{names[0]}`, {first.shape}"
        )
    if second.dtype != first.dtype:
        raise InputError(
            f"`{names[1]}` has dtype {second.dtype}, expected the dtype of "
            f"`{names[0]}`, {first.dtype}"
        )
    return first, second


def labels_for(labels, scores: np.ndarray, scores_name: str) -> np.ndarray:
    """Check `labels` against an (N, L) array of scores.

    Returns class indices of shape (N,) as int64, or one-hot rows of shape
    (N, L) converted to the dtype of the scores.
    """
    labels = np.asarray(labels)
    n, classes = scores.shape
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise InputError(
                f"`labels` of shape {labels.shape} must hold integer class "
                f"indices, got dtype {labels.dtype}; pass one-hot rows as an "
                f"(N, L) array"
            )
        if labels.shape[0] != n:
            raise InputError(
                f"`labels` has {labels.shape[0]} entries, expected one per "
                f"row of `{scores_name}` ({n})"
            )
        low, high = labels.min(), labels.max()
        if low < 0 or high >= classes:
            bad = low if low < 0 else high
            raise LabelRangeError(
                f"`labels` contains class index {bad}, expected indices in "
                f"[0, {classes}) for L = {classes} classes"
            )
        return labels.astype(np.int64, copy=False)
    if labels.ndim == 2:
        if labels.shape != scores.shape:
            raise InputError(
                f"one-hot `labels` have shape {labels.shape}, expected the shape "
                f"of `{scores_name}`, {scores.shape}"
            )
        if labels.dtype.kind not in "biuf":
            raise InputError(
                f"one-hot `labels` must be numeric, got dtype {labels.dtype}"
            )
        return labels.astype(scores.dtype, copy=False)
    raise InputError(
        f"`labels` must be class indices of shape (N,) or one-hot rows of "
        f"shape (N, L), got a {labels.ndim}-D array of shape {labels.shape}"
    )


def output_for(out, like: np.ndarray, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Return a buffer for the result: `out` after checking it, or a new array."""
    if out is None:
        return np.empty(like.shape, dtype=like.dtype)
    if not isinstance(out, np.ndarray):
        raise InputError(f"`out` must be a numpy array, got {type(out).__name__}")
    if out.shape != like.shape or out.dtype != like.dtype:
        raise InputError(
            f"`out` has shape {out.shape} and dtype {out.dtype}, expected shape "
            f"{like.shape} and dtype {like.dtype}"
        )
    if not out.flags.writeable:
        raise InputError("`out` is read-only, expected a writeable array")
    for name, array in inputs.items():
        if np.may_share_memory(out, array):
            raise InputError(
                f"`out` overlaps `{name}`; pass a separate array, because the "
                f"result is written while `{name}` is still being read"
            )
    return out
