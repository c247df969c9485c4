"""The one size grid and the one seeded input factory for asv, pytest-benchmark and the tests.

The class counts are the ones people train with; the batch sizes are typical
for each. The grid stops at a few thousand rows because the default run must
end in about three minutes on two cores. Append to the grids, never change an
entry, so that history stays comparable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import impls

TEXTBOOK = 3  # the three-class example of the textbook derivation
MNIST = 10  # also CIFAR-10
CIFAR100 = 100
IMAGENET = 1000
GPT2 = 50257  # GPT-2's vocabulary
LLAMA3 = 128256  # Llama 3's vocabulary

DTYPES = ("float64", "float32")  # the default sweep
# Only GPU backends take these, so a sweep includes them only on request.
HALF_DTYPES = ("float16", "bfloat16")
ALL_DTYPES = DTYPES + HALF_DTYPES
SEED = 20261204

# Input distributions of the logits. "normal" is 3 times a standard normal,
# "peaked" rows are confident like a trained classifier's (see make_logits),
# and "large" rows reach |z| = 1e4, where exp(z) overflows and a softmax without
# the max shift fails.
DISTRIBUTIONS = ("normal", "peaked", "large")

# Logits of the digits network after `softgrad train`'s default training, on
# its training split, with the true labels; made by
# softgrad.train.save_digits_logits and checked against a new training by
# the tests.
DIGITS_LOGITS_PATH = Path(__file__).parent / "data" / "digits_logits.npz"

# "large" rows: an offset of magnitude LARGE_OFFSET_MIN to LARGE_OFFSET_MAX plus
# 3 standard normals, so on even rows exp(z) overflows or underflows for every
# class, and a softmax without the max shift returns NaN. On odd rows one class
# also jumps LARGE_JUMP_MIN to LARGE_JUMP_MAX above the others, so it takes all
# the probability and the others underflow to exactly 0 (exp(-745) is 0 in
# float64). All values are clipped to +-LARGE_LIMIT.
LARGE_OFFSET_MIN = 1000.0
LARGE_OFFSET_MAX = 9000.0
LARGE_SPREAD = 3.0
LARGE_JUMP_MIN = 800.0
LARGE_JUMP_MAX = 1000.0
LARGE_LIMIT = 1e4


@dataclass(frozen=True, order=True)
class Size:
    """A batch of N samples over L classes."""

    n: int
    classes: int

    def __str__(self) -> str:
        return f"{self.n}x{self.classes}"


DEFAULT_GRID = (
    Size(3, TEXTBOOK),
    Size(256, TEXTBOOK),
    Size(4096, TEXTBOOK),
    Size(1, MNIST),
    Size(64, MNIST),
    Size(1024, MNIST),
    Size(32, CIFAR100),
    Size(512, CIFAR100),
    Size(16, IMAGENET),
    Size(256, IMAGENET),
    Size(2048, IMAGENET),
    Size(4, GPT2),
    Size(32, GPT2),
)

# A grid small enough to run in seconds, for trying things out.
QUICK_GRID = (Size(3, TEXTBOOK), Size(1024, MNIST), Size(256, IMAGENET))

# The size plain `pytest` runs each benchmark on once, untimed.
SMOKE_SIZE = Size(4, 5)

# Sizes worth naming that the default grid leaves out because they are slow here.
LARGE_GRID = (Size(4096, IMAGENET), Size(256, GPT2), Size(64, LLAMA3))

GRIDS = {"default": DEFAULT_GRID, "quick": QUICK_GRID, "large": LARGE_GRID}


def parse_size(text: str) -> Size:
    """Parse "NxL" (for example "256x1000") into a Size."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        n, classes = (int(part) for part in parts)
    except ValueError:
        raise ValueError(
            f"invalid size {text!r}: expected NxL with two positive integers, "
            f"for example 256x1000"
        ) from None
    if n < 1 or classes < 1:
        raise ValueError(
            f"invalid size {text!r}: N and L must both be at least 1"
        )
    return Size(n, classes)


def numpy_dtype(dtype) -> np.dtype:
    """Return the numpy dtype of `dtype`; bfloat16 is ml_dtypes' extension type.

    Raises ImportError, naming the package, when bfloat16 is asked for without
    ml_dtypes.
    """
    if str(dtype) != "bfloat16":
        return np.dtype(dtype)
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(
            "bfloat16 inputs need the ml_dtypes package, which is not installed: "
            "pip install ml_dtypes"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def _generator(size: Size, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, size.n, size.classes]))


def make_logits(
    size: Size, dtype="float64", seed: int = SEED, distribution: str = "normal"
) -> np.ndarray:
    """Return seeded logits of shape (N, L), drawn from `distribution`.

    "normal" (the default) is 3 times a standard normal. "peaked" rows are
    confident: for L = 10 they are rows of the trained digits network's
    logits, and for other L synthetic rows shaped like them. "large" rows
    reach |z| = 1e4.
    """
    _check_distribution(distribution)
    if distribution == "peaked":
        return _peaked(size, seed)[0].astype(dtype)
    if distribution == "large":
        return _large(size, seed).astype(dtype)
    rng = _generator(size, seed)
    logits = 3.0 * rng.standard_normal((size.n, size.classes))
    return logits.astype(numpy_dtype(dtype))


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"`distribution` must be one of: {', '.join(DISTRIBUTIONS)}; "
            f"got {distribution!r}"
        )


def _distribution_generator(size: Size, seed: int, name: str) -> np.random.Generator:
    """Return a generator of its own for `name`, so "normal" keeps its stream."""
    tag = DISTRIBUTIONS.index(name)
    return np.random.default_rng(
        np.random.SeedSequence([seed, size.n, size.classes, tag])
    )


def _large(size: Size, seed: int) -> np.ndarray:
    rng = _distribution_generator(size, seed, "large")
    magnitude = rng.uniform(LARGE_OFFSET_MIN, LARGE_OFFSET_MAX, size.n)
    offset = magnitude * rng.choice((-1.0, 1.0), size.n)
    logits = offset[:, np.newaxis] + LARGE_SPREAD * rng.standard_normal(
        (size.n, size.classes)
    )
    saturated = np.arange(1, size.n, 2)
    winners = rng.integers(0, size.classes, saturated.size)
    logits[saturated, winners] += rng.uniform(
        LARGE_JUMP_MIN, LARGE_JUMP_MAX, saturated.size
    )
    return np.clip(logits, -LARGE_LIMIT, LARGE_LIMIT)


@functools.lru_cache(maxsize=1)
def digits_rows() -> tuple[np.ndarray, np.ndarray]:
    """Return the stored digits logits (float64, shape (M, 10)) and labels (int64)."""
    with np.load(DIGITS_LOGITS_PATH) as stored:
        logits = stored["logits"].astype(np.float64)
        labels = stored["labels"].astype(np.int64)
    logits.setflags(write=False)
    labels.setflags(write=False)
    return logits, labels


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


@functools.lru_cache(maxsize=1)
def peaked_shape() -> dict[str, np.ndarray]:
    """Return, per stored digits row: the log-odds of its top class against the
    others, the spread and mean of its other logits, and whether its top class
    is the true label."""
    logits, labels = digits_rows()
    top = logits.argmax(axis=1)
    rows = np.arange(len(top))
    others = logits[~np.eye(logits.shape[1], dtype=bool)[top]].reshape(
        len(top), logits.shape[1] - 1
    )
    return {
        "log_odds": logits[rows, top] - _logsumexp(others),
        "spread": others.std(axis=1),
        "mean": logits.mean(axis=1),
        "correct": top == labels,
    }


def _peaked(size: Size, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return peaked logits and labels that match them as the network's do.

    For L = 10, rows of the stored digits logits, drawn with replacement. For
    other L, each row copies the shape of a stored row. Its other logits are
    normal with that row's spread and mean, and its top class has the same
    log-odds against them, so the top probability matches. The label is the
    top class as often as the network's label is.
    """
    rng = _distribution_generator(size, seed, "peaked")
    logits, labels = digits_rows()
    picks = rng.integers(0, len(labels), size.n)
    if size.classes == logits.shape[1]:
        return logits[picks], labels[picks].copy()

    shape = {name: values[picks] for name, values in peaked_shape().items()}
    rows = np.arange(size.n)
    z = shape["spread"][:, np.newaxis] * rng.standard_normal((size.n, size.classes))
    z += shape["mean"][:, np.newaxis]
    top = rng.integers(0, size.classes, size.n)
    if size.classes > 1:
        mask = np.ones(z.shape, dtype=bool)
        mask[rows, top] = False
        z_others = z[mask].reshape(size.n, size.classes - 1)
        z[rows, top] = shape["log_odds"] + _logsumexp(z_others)
    wrong = (top + rng.integers(1, max(size.classes, 2), size.n)) % size.classes
    chosen = np.where(shape["correct"] | (size.classes == 1), top, wrong)
    return z, chosen.astype(np.int64)


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Return the float64 softmax of each row, shifted by the row max."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_inputs(
    family: str,
    size: Size,
    dtype="float64",
    seed: int = SEED,
    one_hot=False,
    distribution: str = "normal",
) -> tuple[np.ndarray, np.ndarray]:
    """Return the seeded arguments of `family` at `size`, as the backends take them.

    Probabilities are a real softmax of the logits, upstream gradients are
    standard normal, and labels are valid class indices (or one-hot rows).
    Labels are uniform, except for "peaked" logits, whose labels agree with
    the top class as often as the trained network's do.
    """
    rng = _generator(size, seed + 1)
    dtype = numpy_dtype(dtype)
    labels = rng.integers(0, size.classes, size=size.n)
    if distribution == "peaked":
        logits, labels = _peaked(size, seed)
        logits = logits.astype(dtype)
    else:
        logits = make_logits(size, dtype, seed, distribution)
    if one_hot:
        rows = np.zeros((size.n, size.classes), dtype=dtype)
        rows[np.arange(size.n), labels] = 1
        labels = rows
    if family == "softmax_backward":
        dvalues = rng.standard_normal((size.n, size.classes)).astype(dtype)
        return softmax64(logits).astype(dtype), dvalues
    if family == "cce_softmax_backward":
        return softmax64(logits).astype(dtype), labels
    if family == "cce_logits_backward":
        return logits, labels
    raise ValueError(f"unknown family `{family}`")


def bytes_moved(family: str, size: Size, dtype) -> int:
    """Return the bytes a call must read and write at least: inputs once, output once."""
    matrix = size.n * size.classes * impls.itemsize(dtype)
    if family == "softmax_backward":
        return 3 * matrix
    return 2 * matrix + size.n * np.dtype(np.int64).itemsize
