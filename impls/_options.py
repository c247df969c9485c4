"""The cross-entropy options of the CCE backends, with the semantics of PyTorch's
`torch.nn.functional.cross_entropy`: reduction, class weight, ignore_index and
label smoothing. Every backend takes them through `accepts_loss_options`.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass

import numpy as np

from impls._checks import InputError, LabelRangeError, labels_for

REDUCTIONS = ("mean", "sum", "none")

# PyTorch's default. No class index equals it, so with the defaults a label of
# -100 marks a sample to leave out, and every other label must be a class.
DEFAULT_IGNORE_INDEX = -100

OPTIONS_DOC = """
    Keyword options, with the semantics of PyTorch's `cross_entropy`:
    `reduction` ("mean", "sum" or "none"), `weight` (one weight >= 0 per
    class), `ignore_index` (-100 or a class index; samples whose label equals
    it add nothing) and `label_smoothing` (in [0, 1]). "mean" divides by the
    summed weight of the labels of the samples kept, or by N for one-hot
    labels, which PyTorch treats as class probabilities. "none" returns the
    gradient of the sum of the per-sample losses.
"""


@dataclass(frozen=True)
class LossOptions:
    """The options of one call, after the checks that need no input shape."""

    reduction: str = "mean"
    weight: object = None  # as given; checked against L by `validate_labels`
    ignore_index: int = DEFAULT_IGNORE_INDEX
    label_smoothing: float = 0.0


def check_options(
    reduction="mean",
    weight=None,
    ignore_index=DEFAULT_IGNORE_INDEX,
    label_smoothing=0.0,
) -> LossOptions:
    """Check the options whose validity does not depend on the inputs."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise InputError(
            f"`reduction` must be one of 'mean', 'sum' or 'none', got {reduction!r}"
        )
    if isinstance(ignore_index, (bool, np.bool_)):
        raise InputError(f"`ignore_index` must be an integer, got {ignore_index!r}")
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise InputError(
            f"`ignore_index` must be an integer, got {ignore_index!r}"
        ) from None
    if (
        isinstance(label_smoothing, (bool, np.bool_))
        or not isinstance(label_smoothing, numbers.Real)
        or not 0 <= label_smoothing <= 1
    ):
        raise InputError(
            f"`label_smoothing` must be a number in [0, 1], got {label_smoothing!r}"
        )
    return LossOptions(reduction, weight, ignore_index, float(label_smoothing))


def check_weight(weight, classes: int) -> np.ndarray | None:
    """Return the class weights as float64 of shape (L,), or None when not given."""
    if weight is None:
        return None
    weight = np.asarray(weight)
    if weight.ndim != 1 or weight.shape[0] != classes:
        raise InputError(
            f"`weight` must be a 1-D array of one weight per class ({classes}), "
            f"got shape {weight.shape}"
        )
    if weight.dtype.kind not in "biuf":
        raise InputError(f"`weight` must be numeric, got dtype {weight.dtype}")
    weight = weight.astype(np.float64)
    if not np.isfinite(weight).all():
        raise InputError("`weight` contains NaN or infinity, expected weights >= 0")
    negative = np.flatnonzero(weight < 0)
    if negative.size:
        k = int(negative[0])
        raise InputError(
            f"`weight` has the negative value {weight[k]:g} at class {k}, "
            f"expected weights >= 0"
        )
    return weight


@dataclass(frozen=True)
class CheckedLabels:
    """Labels and options of one call, checked against the (N, L) scores."""

    labels: np.ndarray  # (N,) int64, 0 where ignored; or (N, L) in the scores dtype
    kept: np.ndarray  # (N,) bool: False for samples whose label is ignore_index
    weight: np.ndarray | None  # (L,) float64, or None when not given


def validate_labels(
    scores: np.ndarray, labels, scores_name: str, options: LossOptions
) -> CheckedLabels:
    """Check `labels`, `weight` and `ignore_index` against the (N, L) `scores`."""
    n, classes = scores.shape
    weight = check_weight(options.weight, classes)
    ignore_index = options.ignore_index
    if ignore_index != DEFAULT_IGNORE_INDEX and not 0 <= ignore_index < classes:
        raise InputError(
            f"`ignore_index` must be -100 or a class index in [0, {classes}), "
            f"got {ignore_index}"
        )
    raw = np.asarray(labels)
    if raw.ndim == 1 and raw.dtype.kind in "iu":
        kept = raw != ignore_index
        try:
            checked = labels_for(np.where(kept, raw, 0), scores, scores_name)
        except LabelRangeError as error:
            raise LabelRangeError(
                f"{error}, or equal to `ignore_index` ({ignore_index})"
            ) from None
        return CheckedLabels(checked, kept, weight)

    checked = labels_for(raw, scores, scores_name)
    if ignore_index != DEFAULT_IGNORE_INDEX:
        raise InputError(
            f"`ignore_index` applies only to class-index labels of shape (N,), got "
            f"ignore_index={ignore_index} with one-hot labels of shape {raw.shape}; "
            f"leave it at -100"
        )
    return CheckedLabels(checked, np.ones(n, dtype=bool), weight)


@dataclass(frozen=True)
class LossTerms:
    """Inputs of an option path: labels, class weights and the reduction's scale."""

    labels: np.ndarray  # (N,) int64, 0 where ignored; or (N, L) targets
    kept: np.ndarray  # (N,) bool
    weight: np.ndarray  # (L,) float64, ones when no weight was given
    scale: float  # 1 / (the mean's denominator), or 1 for "sum" and "none"
    smoothing: float


def loss_terms(
    scores: np.ndarray, labels, scores_name: str, options: LossOptions
) -> LossTerms:
    """Check labels and options against `scores` and work out the reduction's scale.

    As in PyTorch, a mean over samples that are all ignored has a zero
    gradient, and a mean over kept samples whose weights sum to 0 has a NaN
    gradient on those rows.
    """
    checked = validate_labels(scores, labels, scores_name, options)
    n, classes = scores.shape
    weight = np.ones(classes) if checked.weight is None else checked.weight
    if options.reduction != "mean":
        scale = 1.0
    elif checked.labels.ndim == 2:
        scale = 1.0 / n
    else:
        total = weight[checked.labels[checked.kept]].sum()
        if total > 0:
            scale = 1.0 / total
        else:
            scale = float("nan") if checked.kept.any() else 0.0
    return LossTerms(
        checked.labels, checked.kept, weight, scale, options.label_smoothing
    )


def _plain_defaults(reduction, weight, ignore_index, label_smoothing) -> bool:
    """Return True when every option is the plain Python default value.

    It costs about 0.2 us, against about 2 us for `check_options` (timeit, Python
    3.11, 2-core x86 machine), so the default path stays fast. Other values
    equal to the defaults, such as numpy scalars, take the option path, which
    gives the same result.
    """
    return (
        weight is None
        and type(reduction) is str
        and reduction == "mean"
        and type(ignore_index) is int
        and ignore_index == DEFAULT_IGNORE_INDEX
        and type(label_smoothing) in (float, int)
        and label_smoothing == 0
    )


def accepts_loss_options(option_path):
    """Give a CCE backend PyTorch's cross-entropy options as keyword arguments.

    A call with the default options goes to the decorated function, the fast
    path, unchanged. Any other option, or a label equal to `ignore_index`
    (which the fast path rejects as out of range), goes to
    `option_path(scores, labels, options, out=out)`.
    """

    def decorate(default_path):
        def backend(
            scores,
            labels,
            *,
            out=None,
            reduction="mean",
            weight=None,
            ignore_index=DEFAULT_IGNORE_INDEX,
            label_smoothing=0.0,
        ):
            if _plain_defaults(reduction, weight, ignore_index, label_smoothing):
                try:
                    return default_path(scores, labels, out=out)
                except LabelRangeError:
                    pass  # the option path leaves out labels equal to ignore_index
            options = check_options(reduction, weight, ignore_index, label_smoothing)
            return option_path(scores, labels, options, out=out)

        # Not functools.wraps: its __wrapped__ would make inspect.signature
        # show the fast path's signature, which lacks the options.
        backend.__name__ = default_path.__name__
        backend.__qualname__ = default_path.__qualname__
        backend.__module__ = default_path.__module__
        backend.__doc__ = (default_path.__doc__ or "") + "\n" + OPTIONS_DOC
        return backend

    return decorate
