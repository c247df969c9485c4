"""The one size grid and the one seeded input factory for asv, pytest-benchmark and the tests.

The class counts are the ones people train with; the batch sizes are typical
for each. The grid stops at a few thousand rows because the default run must
end in about three minutes on two cores. Append to the grids, never change an
entry, so that history stays comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def make_logits(size: Size, dtype="float64", seed: int = SEED) -> np.ndarray:
    """Return seeded logits of shape (N, L), spread like a trained classifier's."""
    rng = _generator(size, seed)
    logits = 3.0 * rng.standard_normal((size.n, size.classes))
    return logits.astype(numpy_dtype(dtype))


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Return the float64 softmax of each row, shifted by the row max."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_inputs(
    family: str, size: Size, dtype="float64", seed: int = SEED, one_hot=False
) -> tuple[np.ndarray, np.ndarray]:
    """Return the seeded arguments of `family` at `size`, as the backends take them.

    Probabilities are a real softmax of the logits, upstream gradients are
    standard normal, and labels are valid class indices (or one-hot rows).
    """
    rng = _generator(size, seed + 1)
    dtype = numpy_dtype(dtype)
    logits = make_logits(size, dtype, seed)
    labels = rng.integers(0, size.classes, size=size.n)
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
