"""Input checks shared by every backend, so that all of them reject bad input alike.

Only checks that cost O(N) or less live here, because they run inside every call.
Checks that read the whole array (finite values, one-hot rows) belong to the
caller and run once before timing.
"""

from __future__ import annotations

import numpy as np

CPU_DTYPE_NAMES = ("float32", "float64")
# GPU backends also take the 16-bit types. bfloat16 has no numpy dtype of its own:
# on the host it is ml_dtypes.bfloat16, whose dtype kind is "V", not "f".
DEVICE_DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")


class InputError(ValueError):
    """Invalid argument given to a backend: wrong shape, dtype or value."""


class LabelRangeError(InputError):
    """A class index outside [0, L), which the CCE options may still accept as ignored."""


def _one_of(names) -> str:
    """Join names as "a or b", or "a, b or c"."""
    if len(names) < 3:
        return " or ".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


# Names of the CPU dtypes, looked up by dtype: str(dtype) costs about 2.5 us
# (numpy 2.4), as much as a small kernel's whole call.
_CPU_DTYPE_NAME = {np.dtype(name): name for name in CPU_DTYPE_NAMES}


def _dtype_named(dtype, dtypes) -> bool:
    """Return True when `dtype` is named in `dtypes`."""
    name = _CPU_DTYPE_NAME.get(dtype)
    return (name if name is not None else str(dtype)) in dtypes


def check_matrix(array, name: str, dtypes=CPU_DTYPE_NAMES) -> None:
    """Check that `array` is (N, L) with N, L >= 1 and a dtype named in `dtypes`.

    Reads only `ndim`, `shape` and `dtype`, so it also checks device arrays
    without copying them.
    """
    if array.ndim != 2:
        raise InputError(
            f"`{name}` must be a 2-D array of shape (N, L), "
            f"got a {array.ndim}-D array of shape {tuple(array.shape)}"
        )
    if not _dtype_named(array.dtype, dtypes):
        raise InputError(
            f"`{name}` must have dtype {_one_of(dtypes)}, got {array.dtype}"
        )
    shape = tuple(array.shape)
    if shape[0] == 0:
        raise InputError(
            f"`{name}` has shape {shape}: expected at least one sample (N >= 1)"
        )
    if shape[1] == 0:
        raise InputError(
            f"`{name}` has shape {shape}: expected at least one class (L >= 1)"
        )


def float_matrix(array, name: str, dtypes=CPU_DTYPE_NAMES) -> np.ndarray:
    """Return `array` as an (N, L) array of a dtype named in `dtypes`, N, L >= 1.

    The default, float32 or float64, is what the CPU backends take.
    """
    array = np.asarray(array)
    check_matrix(array, name, dtypes)
    return array


def matching_pair(
    first, second, names: tuple[str, str], dtypes=CPU_DTYPE_NAMES
) -> tuple[np.ndarray, ...]:
    """Check two float matrices that must agree in shape and dtype."""
    first = float_matrix(first, names[0], dtypes)
    second = float_matrix(second, names[1], dtypes)
    check_same_layout(first, second, names)
    return first, second


def check_same_layout(first, second, names: tuple[str, str]) -> None:
    """Check that two checked matrices have the same shape and dtype."""
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


def is_float_dtype(dtype) -> bool:
    """Return True for a floating-point dtype, ml_dtypes' bfloat16 included."""
    return dtype.kind == "f" or str(dtype) == "bfloat16"


def check_labels(labels, scores, scores_name: str) -> None:
    """Check the shape and dtype of `labels` against (N, L) scores, not their values.

    Reads only `ndim`, `shape` and `dtype`, so it also checks device arrays
    without copying them.
    """
    n = scores.shape[0]
    shape = tuple(labels.shape)
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise InputError(
                f"`labels` of shape {shape} must hold integer class "
                f"indices, got dtype {labels.dtype}; pass one-hot rows as an "
                f"(N, L) array"
            )
        if shape[0] != n:
            raise InputError(
                f"`labels` has {shape[0]} entries, expected one per "
                f"row of `{scores_name}` ({n})"
            )
        return
    if labels.ndim == 2:
        if shape != tuple(scores.shape):
            raise InputError(
                f"one-hot `labels` have shape {shape}, expected the shape "
                f"of `{scores_name}`, {tuple(scores.shape)}"
            )
        if labels.dtype.kind not in "biu" and not is_float_dtype(labels.dtype):
            raise InputError(
                f"one-hot `labels` must be numeric, got dtype {labels.dtype}"
            )
        return
    raise InputError(
        f"`labels` must be class indices of shape (N,) or one-hot rows of "
        f"shape (N, L), got a {labels.ndim}-D array of shape {shape}"
    )


def labels_for(labels, scores: np.ndarray, scores_name: str) -> np.ndarray:
    """Check `labels` against an (N, L) array of scores.

    Returns class indices of shape (N,) as int64, or one-hot rows of shape
    (N, L) converted to the dtype of the scores.
    """
    labels = np.asarray(labels)
    check_labels(labels, scores, scores_name)
    if labels.ndim == 2:
        return labels.astype(scores.dtype, copy=False)
    classes = scores.shape[1]
    low, high = labels.min(), labels.max()
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise LabelRangeError(
            f"`labels` contains class index {bad}, expected indices in "
            f"[0, {classes}) for L = {classes} classes"
        )
    return labels.astype(np.int64, copy=False)


def _same_array(first: np.ndarray, second: np.ndarray) -> bool:
    """Return True when both views cover the same elements in the same layout."""
    return (
        first.__array_interface__["data"][0] == second.__array_interface__["data"][0]
        and first.shape == second.shape
        and first.strides == second.strides
        and first.dtype == second.dtype
    )


def output_for(
    out, like: np.ndarray, inputs: dict[str, np.ndarray], may_alias=()
) -> np.ndarray:
    """Return a buffer for the result: `out` after checking it, or a new array.

    `out` may be an input named in `may_alias` itself (same memory, shape and
    strides), which a backend allows when it reads each element of that input
    before it writes the same element of the result. Any other overlap with
    an input is rejected.
    """
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
        if not np.may_share_memory(out, array):
            continue
        if name in may_alias and _same_array(out, array):
            continue
        if name in may_alias:
            raise InputError(
                f"`out` overlaps `{name}` without being the same array; pass "
                f"`{name}` itself or a separate array"
            )
        raise InputError(
            f"`out` overlaps `{name}`; pass a separate array, because the "
            f"result is written while `{name}` is still being read"
        )
    return out


def device_inputs(family: str, first, second) -> tuple[np.ndarray, np.ndarray]:
    """Check a family's numpy inputs on the host before they are copied to a GPU.

    The checks and messages are the CPU backends', except that float16 and
    bfloat16 are accepted too.
    NOTE: GPU backends take none of the CCE loss options, so a label of -100
    is rejected here, while the CPU backends ignore such a sample. Label values are range-checked here, because
    a check on the device would force a synchronization inside every timed call.
    """
    if family == "softmax_backward":
        return matching_pair(first, second, ("probs", "dvalues"), DEVICE_DTYPE_NAMES)
    name = "probs" if family == "cce_softmax_backward" else "logits"
    scores = float_matrix(first, name, DEVICE_DTYPE_NAMES)
    return scores, labels_for(second, scores, name)
