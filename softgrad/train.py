"""Train a small numpy network on scikit-learn's handwritten digits once per backend.

Only the output layer's softmax (+ CCE) gradient changes between runs, so the
timings show that gradient's share of a real training step, and the loss curves
show whether every backend trains the same network.
"""

from __future__ import annotations

import base64
import csv
import datetime
import functools
import html
import io
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import threadpoolctl

import impls
from softgrad.grid import DIGITS_LOGITS_PATH, SEED

log = logging.getLogger(__name__)

SCHEMA = "softgrad-train"
SCHEMA_VERSION = 1

DEFAULT_EPOCHS = 30  # training loss about 0.07 and test accuracy about 96 % by then
BATCH_SIZE = 32
HIDDEN_UNITS = 64
LEARNING_RATE = 0.1
TEST_FRACTION = 0.2
PIXEL_MAX = 16.0  # load_digits pixels are integers from 0 to 16
DTYPES = ("float64", "float32")

# The backend of the cce_logits_backward family that makes the stored digits
# logits behind the "peaked" input distribution (see save_digits_logits).
LOGITS_BACKEND = "logits_numpy"

# Safety factor of the loss-curve tolerance; see loss_tolerance for the rule.
TOLERANCE_FACTOR = 10

# The network's matrices are small (at most 32 x 64 by 64 x 64), so more BLAS
# threads would only add hand-offs and timing noise.
BLAS_THREADS = 1


class TrainError(Exception):
    """Training cannot run: bad options or a missing dependency."""


class DivergenceError(TrainError):
    """A backend's loss curve left the reference curve by more than the tolerance."""

    def __init__(self, key: str, epoch: int, difference: float, tolerance: float):
        self.key = key
        self.epoch = epoch
        self.difference = difference
        self.tolerance = tolerance
        super().__init__(
            f"backend {key} diverges from the reference loss curve at epoch "
            f"{epoch}: relative difference {difference:.3g}, tolerance "
            f"{tolerance:.3g}"
        )


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run, the same for every backend."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = BATCH_SIZE
    hidden_units: int = HIDDEN_UNITS
    learning_rate: float = LEARNING_RATE
    seed: int = SEED
    dtype: str = "float64"
    train_samples: int | None = None  # the first samples of the training split

    def validate(self) -> None:
        """Raise TrainError naming the first invalid field."""
        if self.dtype not in DTYPES:
            raise TrainError(
                f"`dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        for name in ("epochs", "batch_size", "hidden_units"):
            value = getattr(self, name)
            if value < 1:
                raise TrainError(f"`{name}` must be at least 1, got {value}")
        if not self.learning_rate > 0:
            raise TrainError(
                f"`learning_rate` must be positive, got {self.learning_rate}"
            )
        if self.train_samples is not None and self.train_samples < 1:
            raise TrainError(
                f"`train_samples` must be at least 1, got {self.train_samples}"
            )


@dataclass(frozen=True)
class Digits:
    """The scaled digits images (pixels in [0, 1]) split into train and test."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1


@functools.lru_cache(maxsize=4)
def load_digits_split(seed: int = SEED, dtype: str = "float64") -> Digits:
    """Load scikit-learn's 1797 digits, scale pixels to [0, 1] and split them.

    The split is stratified by class and keeps TEST_FRACTION of the images for
    the test set.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise TrainError(
            f"training needs scikit-learn, which is not installed ({error}); "
            f"install it with `pip install scikit-learn`"
        ) from None
    images, labels = load_digits(return_X_y=True)
    images = (images / PIXEL_MAX).astype(dtype)
    train_x, test_x, train_y, test_y = train_test_split(
        images,
        labels.astype(np.int64),
        test_size=TEST_FRACTION,
        stratify=labels,
        random_state=seed % 2**32,
    )
    for array in (train_x, train_y, test_x, test_y):
        array.setflags(write=False)  # shared by every run through the cache
    return Digits(train_x, train_y, test_x, test_y)


def stable_softmax(logits: np.ndarray) -> np.ndarray:
    """Return softmax of each row, shifted by the row max so exp cannot overflow."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the mean CCE of integer `labels`, computed in float64 from log-softmax."""
    z = logits.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


# dL/dz of the batch's mean CCE from (logits, labels), and the seconds spent
# inside the backend call alone.
OutputGradient = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, float]]


@dataclass
class Network:
    """Dense, ReLU, dense; softmax + CCE on top. Parameters are updated in place."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @classmethod
    def initial(
        cls, inputs: int, hidden: int, classes: int, seed: int, dtype: str
    ) -> Network:
        """Draw He-initialised weights and zero biases, seeded by `seed`."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        w1 = rng.standard_normal((inputs, hidden)) * np.sqrt(2.0 / inputs)
        w2 = rng.standard_normal((hidden, classes)) * np.sqrt(2.0 / hidden)
        return cls(
            w1.astype(dtype),
            np.zeros(hidden, dtype=dtype),
            w2.astype(dtype),
            np.zeros(classes, dtype=dtype),
        )

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Return the output layer's logits for the rows of `x`."""
        return np.maximum(x @ self.w1 + self.b1, 0) @ self.w2 + self.b2

    def step(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        output_gradient: OutputGradient,
        learning_rate: float,
    ) -> float:
        """Take one SGD step on a batch; return the seconds spent in the backend."""
        pre_activation = x @ self.w1 + self.b1
        hidden = np.maximum(pre_activation, 0)
        logits = hidden @ self.w2 + self.b2

        dlogits, seconds = output_gradient(logits, labels)

        dw2 = hidden.T @ dlogits
        db2 = dlogits.sum(axis=0)
        dhidden = dlogits @ self.w2.T
        dhidden[pre_activation <= 0] = 0
        dw1 = x.T @ dhidden
        db1 = dhidden.sum(axis=0)

        rate = self.w1.dtype.type(learning_rate)
        self.w1 -= rate * dw1
        self.b1 -= rate * db1
        self.w2 -= rate * dw2
        self.b2 -= rate * db2
        return seconds


def output_gradient(backend: Callable, family: str) -> OutputGradient:
    """Wrap `backend` of `family` as the output layer's backward pass.

    For softmax_backward the network computes the CCE backward dL/ds = -y / s / B
    itself and passes it through the backend; the CCE families return dL/dz
    from the probabilities or from the logits. Only the backend call is timed.
    """

    def from_dvalues(logits, labels):
        probs = stable_softmax(logits)
        dvalues = np.zeros_like(probs)
        rows = np.arange(len(labels))
        dvalues[rows, labels] = -1 / (probs[rows, labels] * len(labels))
        start = time.perf_counter()
        result = backend(probs, dvalues)
        return result, time.perf_counter() - start

    def from_probs(logits, labels):
        probs = stable_softmax(logits)
        start = time.perf_counter()
        result = backend(probs, labels)
        return result, time.perf_counter() - start

    def from_logits(logits, labels):
        start = time.perf_counter()
        result = backend(logits, labels)
        return result, time.perf_counter() - start

    wrappers = {
        "softmax_backward": from_dvalues,
        "cce_softmax_backward": from_probs,
        "cce_logits_backward": from_logits,
    }
    return wrappers[family]


@dataclass
class Run:
    """One backend's training: loss after each epoch and where the time went."""

    family: str
    backend: str
    loss_curve: list[float]  # training loss before epoch 1, then after each epoch
    epoch_s: list[float]  # wall time of each epoch's SGD steps
    gradient_s: list[float]  # time inside the backend call, per epoch
    test_accuracy: float
    compile_s: float | None = None
    max_difference: float | None = None  # max over epochs, relative to the reference
    diverged_epoch: int | None = None

    @property
    def key(self) -> str:
        return f"{self.family}/{self.backend}"

    @property
    def epoch_median_s(self) -> float:
        return float(np.median(self.epoch_s))

    @property
    def gradient_median_s(self) -> float:
        return float(np.median(self.gradient_s))

    @property
    def gradient_share(self) -> float:
        """Median over epochs of the share of the epoch spent in the backend call."""
        return float(np.median(np.divide(self.gradient_s, self.epoch_s)))


@dataclass
class Trained:
    """A trained network with its loss curve and timings."""

    network: Network
    loss_curve: list[float]  # training loss before epoch 1, then after each epoch
    epoch_s: list[float]
    gradient_s: list[float]
    test_accuracy: float


def train_network(
    gradient: OutputGradient, config: TrainConfig, digits: Digits
) -> Trained:
    """Train the network from its seeded start, with `gradient` as output backward."""
    train_x, train_y = digits.train_x, digits.train_y
    if config.train_samples is not None:
        train_x = train_x[: config.train_samples]
        train_y = train_y[: config.train_samples]
    network = Network.initial(
        train_x.shape[1], config.hidden_units, digits.classes, config.seed, config.dtype
    )
    # One shuffling generator per run, so every backend trains on the same batches.
    shuffler = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))

    losses = [mean_cross_entropy(network.logits(train_x), train_y)]
    epoch_s, gradient_s = [], []
    for _ in range(config.epochs):
        order = shuffler.permutation(len(train_y))
        in_gradient = 0.0
        start = time.perf_counter()
        for begin in range(0, len(order), config.batch_size):
            batch = order[begin : begin + config.batch_size]
            in_gradient += network.step(
                train_x[batch], train_y[batch], gradient, config.learning_rate
            )
        epoch_s.append(time.perf_counter() - start)
        gradient_s.append(in_gradient)
        losses.append(mean_cross_entropy(network.logits(train_x), train_y))

    predictions = network.logits(digits.test_x).argmax(axis=1)
    accuracy = float((predictions == digits.test_y).mean())
    return Trained(network, losses, epoch_s, gradient_s, accuracy)


def steps_per_run(config: TrainConfig, train_samples: int) -> int:
    """Return the number of SGD steps of one run."""
    samples = min(train_samples, config.train_samples or train_samples)
    return config.epochs * -(-samples // config.batch_size)


def loss_tolerance(steps: int, classes: int, dtype: str) -> float:
    """Return the relative loss difference allowed between two correct backends.

    Two correct backends round differently, so each step's gradient differs by
    about L machine epsilons, relative (each entry of dL/dz sums over the L
    classes). Added up over T steps with no amplification, that moves the
    loss by at most about T * L * eps, relative; TOLERANCE_FACTOR leaves room
    for growth through the ReLU kinks. In the default run (30 epochs, 1350
    steps, L = 10) that is 3.0e-11 in float64 and 1.6e-2 in float32, while
    the backends differed by at most 4.4e-16 and 2.2e-7 (2-core x86 machine):
    on the digits network SGD damps the differences instead of adding them up.
    """
    return TOLERANCE_FACTOR * steps * classes * float(np.finfo(dtype).eps)


def _warm_up(backend, family: str, config: TrainConfig, digits: Digits) -> float:
    """Call the backend once on a small batch, so numba compiles outside the timing.

    The batch is gathered by fancy indexing, as in training, so its labels are a
    writeable copy: numba compiles read-only arrays as a separate signature.
    """
    batch = np.arange(2)
    logits = Network.initial(
        digits.train_x.shape[1], 2, digits.classes, config.seed, config.dtype
    ).logits(digits.train_x[batch])
    start = time.perf_counter()
    output_gradient(backend, family)(logits, digits.train_y[batch])
    return time.perf_counter() - start


def _reference_backend(dtype: str) -> Callable:
    oracle = impls.reference("cce_logits_backward")

    def gradient(logits, labels):
        return oracle(logits, labels).astype(dtype)

    return gradient


def relative_difference(
    curve: Sequence[float], reference: Sequence[float]
) -> np.ndarray:
    """Return |curve - reference| / |reference| per epoch (NaN stays NaN)."""
    curve, reference = np.asarray(curve), np.asarray(reference)
    return np.abs(curve - reference) / np.abs(reference)


def select_backends(
    families: Sequence[str] | None = None, names: Sequence[str] | None = None
) -> list[impls.Backend]:
    """Return the backends of `families` (default: all) whose name is in `names`."""
    families = list(families or impls.FAMILIES)
    for family in families:
        if family not in impls.FAMILIES:
            raise TrainError(
                f"unknown family `{family}`, expected one of: "
                f"{', '.join(impls.FAMILIES)}"
            )
    known = {b.name for b in impls.backends()}
    for name in names or ():
        if name not in known:
            raise TrainError(
                f"unknown backend `{name}`, expected one of: {', '.join(sorted(known))}"
            )
    chosen = [
        b
        for family in families
        for b in impls.backends(family)
        if not names or b.name in names
    ]
    if not chosen:
        raise TrainError("no backend matches the families and backends requested")
    return chosen


@dataclass
class TrainResults:
    """One `softgrad train` run: the settings, the reference curve and every backend."""

    config: TrainConfig
    train_samples: int
    test_samples: int
    tolerance: float
    reference_curve: list[float]
    runs: list[Run] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def diverged(self) -> list[Run]:
        return [run for run in self.runs if run.diverged_epoch is not None]

    def largest_pair_difference(self) -> dict | None:
        """Return the largest relative loss difference between two backends.

        A NaN difference (a backend whose loss became NaN) counts as the largest.
        """
        largest = None
        for i, first in enumerate(self.runs):
            for second in self.runs[i + 1 :]:
                differences = relative_difference(first.loss_curve, second.loss_curve)
                undefined = np.flatnonzero(np.isnan(differences))
                epoch = int(undefined[0] if undefined.size else np.argmax(differences))
                value = float(differences[epoch])
                if largest is None or not value <= largest["value"]:
                    largest = {
                        "value": value,
                        "backends": [first.key, second.key],
                        "epoch": epoch,
                    }
                if np.isnan(value):
                    return largest
        return largest

    def raise_for_divergence(self) -> None:
        """Raise DivergenceError for the first backend that left the reference."""
        for run in self.diverged():
            epoch = run.diverged_epoch
            difference = relative_difference(
                run.loss_curve[epoch : epoch + 1],
                self.reference_curve[epoch : epoch + 1],
            )[0]
            raise DivergenceError(run.key, epoch, float(difference), self.tolerance)

    def to_dict(self) -> dict:
        """Return the results as the JSON document written to train.json."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": _machine(),
            "config": asdict(self.config),
            "train_samples": self.train_samples,
            "test_samples": self.test_samples,
            "tolerance": self.tolerance,
            "tolerance_rule": (
                f"{TOLERANCE_FACTOR} x steps x classes x unit roundoff of the dtype"
            ),
            "reference_curve": self.reference_curve,
            "runs": [
                {
                    **asdict(run),
                    "key": run.key,
                    "epoch_median_s": run.epoch_median_s,
                    "gradient_median_s": run.gradient_median_s,
                    "gradient_share": run.gradient_share,
                }
                for run in self.runs
            ],
            "skipped": self.skipped,
            "largest_pair_difference": self.largest_pair_difference(),
        }


def _machine() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "processor": platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "blas_threads": BLAS_THREADS,
    }


def train_backends(
    backends: Sequence,
    config: TrainConfig = TrainConfig(),
    progress: Callable[[str], None] | None = None,
) -> TrainResults:
    """Train the network once with the reference and once per backend, and compare.

    A backend is an impls.Backend, or any callable with `name`, `family`,
    `available`, `reason` and `compiled` attributes. Unavailable backends are
    skipped with their reason. Each run's loss curve is compared with that of a
    run with the float64 oracle of cce_logits_backward, and the first epoch past
    the tolerance is stored. Call `raise_for_divergence` to fail on it.
    """
    config.validate()
    with threadpoolctl.threadpool_limits(BLAS_THREADS, user_api="blas"):
        return _train_all(backends, config, progress)


def _train_all(backends, config, progress) -> TrainResults:
    digits = load_digits_split(config.seed, config.dtype)
    train_samples = len(digits.train_y)
    if config.train_samples is not None:
        train_samples = min(train_samples, config.train_samples)
    tolerance = loss_tolerance(
        steps_per_run(config, train_samples), digits.classes, config.dtype
    )
    reference = _reference_backend(config.dtype)
    reference_curve = train_network(
        output_gradient(reference, "cce_logits_backward"), config, digits
    ).loss_curve
    results = TrainResults(
        config, train_samples, len(digits.test_y), tolerance, reference_curve
    )

    for backend in backends:
        key = f"{backend.family}/{backend.name}"
        if not backend.available:
            results.skipped.append(
                {
                    "family": backend.family,
                    "backend": backend.name,
                    "reason": backend.reason,
                }
            )
            log.info("skipped %s: %s", key, backend.reason)
            continue
        if progress:
            progress(key)
        warm_up_s = _warm_up(backend, backend.family, config, digits)
        trained = train_network(
            output_gradient(backend, backend.family), config, digits
        )
        run = Run(
            backend.family,
            backend.name,
            trained.loss_curve,
            trained.epoch_s,
            trained.gradient_s,
            trained.test_accuracy,
            compile_s=warm_up_s if backend.compiled else None,
        )
        differences = relative_difference(run.loss_curve, reference_curve)
        run.max_difference = float(np.max(differences))
        beyond = np.flatnonzero(~(differences <= tolerance))
        if beyond.size:
            run.diverged_epoch = int(beyond[0])
            log.warning(
                "%s diverges at epoch %d: relative difference %.3g, tolerance %.3g",
                key,
                run.diverged_epoch,
                differences[beyond[0]],
                tolerance,
            )
        results.runs.append(run)
    return results


def digits_logits(config: TrainConfig = TrainConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Train with LOGITS_BACKEND; return the trained network's logits on the training
    split and the true labels: the rows of the "peaked" input distribution."""
    backend = impls.get("cce_logits_backward", LOGITS_BACKEND)
    digits = load_digits_split(config.seed, config.dtype)
    trained = train_network(output_gradient(backend, backend.family), config, digits)
    train_x, train_y = digits.train_x, digits.train_y
    if config.train_samples is not None:
        train_x = train_x[: config.train_samples]
        train_y = train_y[: config.train_samples]
    return trained.network.logits(train_x), train_y


def save_digits_logits(path: Path = DIGITS_LOGITS_PATH) -> Path:
    """Write the "peaked" rows of softgrad.grid to `path`: float32 logits, int8 labels.

    Run it again only on purpose (it changes the inputs of the sweep):
    `python -c "from softgrad.train import save_digits_logits; save_digits_logits()"`.
    """
    config = TrainConfig()
    logits, labels = digits_logits(config)
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            logits=logits.astype(np.float32),
            labels=labels.astype(np.int8),
            epochs=config.epochs,
            seed=config.seed,
        )
    return path


# The per-backend table: (key, heading). The terminal table, the CSV and the
# HTML table are all built from this one definition.
COLUMNS = (
    ("family", "family"),
    ("backend", "backend"),
    ("epoch_ms", "epoch ms"),  # median over the epochs
    ("gradient_ms", "grad ms"),  # in the backend call, per epoch, median
    ("gradient_share", "share"),  # of the epoch spent in the backend, median
    ("final_loss", "final loss"),  # mean CCE over the training samples
    ("test_accuracy", "test acc"),
    ("max_difference", "max diff"),  # relative loss difference from the reference
    ("compile_s", "compile s"),
    ("status", "status"),
)

_FORMATS = {
    "epoch_ms": "{:.2f}",
    "gradient_ms": "{:.3f}",
    "gradient_share": "{:.1%}",
    "final_loss": "{:.6f}",
    "test_accuracy": "{:.2%}",
    "max_difference": "{:.2g}",
    "compile_s": "{:.2f}",
}


def summary_rows(document: dict) -> list[dict]:
    """Return one row of raw values per backend, keyed like COLUMNS, from train.json."""
    rows = []
    for run in document["runs"]:
        diverged = run.get("diverged_epoch")
        curve = run["loss_curve"]
        rows.append(
            {
                "family": run["family"],
                "backend": run["backend"],
                "epoch_ms": 1e3 * run["epoch_median_s"],
                "gradient_ms": 1e3 * run["gradient_median_s"],
                "gradient_share": run["gradient_share"],
                "final_loss": _curve(curve)[-1],
                "test_accuracy": run["test_accuracy"],
                "max_difference": run["max_difference"],
                "compile_s": run.get("compile_s"),
                "status": "ok" if diverged is None else f"diverged at epoch {diverged}",
            }
        )
    for skipped in document.get("skipped", []):
        row = dict.fromkeys(key for key, _ in COLUMNS)
        row.update(
            family=skipped["family"],
            backend=skipped["backend"],
            status=f"skipped: {skipped['reason']}",
        )
        rows.append(row)
    return rows


def format_cell(key: str, value) -> str:
    """Format one table value for people: units as the COLUMNS headings give them."""
    if value is None:
        return ""
    if key in _FORMATS:
        return _FORMATS[key].format(value)
    return str(value)


def _finite(value):
    """Replace NaN and infinity by None, since JSON has no such numbers."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in its folder and a rename."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}-", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_results(document: dict, folder: Path) -> tuple[Path, Path]:
    """Write train.json and train.csv into `folder` atomically; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = folder / "train.json", folder / "train.csv"
    _write_atomically(json_path, json.dumps(_finite(document), indent=1) + "\n")

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in COLUMNS])
    writer.writeheader()
    writer.writerows(_finite(summary_rows(document)))
    _write_atomically(csv_path, buffer.getvalue())
    return json_path, csv_path


def load_results(path: Path) -> dict:
    """Read a train.json, rejecting a file that is not one, with its name."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise TrainError(f"cannot read training results `{path}`: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise TrainError(
            f"`{path}` is not a softgrad training results file "
            f'(expected "schema": "{SCHEMA}")'
        )
    if document.get("schema_version") != SCHEMA_VERSION:
        raise TrainError(
            f"`{path}` has schema_version {document.get('schema_version')}, "
            f"expected {SCHEMA_VERSION}; run `softgrad train` again"
        )
    return document


def _curve(values) -> np.ndarray:
    """Return a loss curve read from JSON as floats, with NaN in place of null."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# Differences of exactly 0 cannot be drawn on a log axis; they are drawn here.
PLOT_FLOOR = 1e-18


def loss_curve_png(document: dict) -> bytes:
    """Draw the loss curves and each backend's distance from the reference as a PNG."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(13, 4.8), layout="constrained")
    curves, distances = figure.subplots(1, 2)
    reference = np.asarray(document["reference_curve"])
    epochs = np.arange(len(reference))
    palette = colormaps["tab20"]
    for index, run in enumerate(document["runs"]):
        color = palette(index % palette.N)
        curve = _curve(run["loss_curve"])
        curves.plot(epochs, curve, color=color, linewidth=1, label=run["key"])
        difference = relative_difference(curve, reference)[1:]
        distances.plot(
            epochs[1:], np.maximum(difference, PLOT_FLOOR), color=color, linewidth=1
        )
    curves.plot(epochs, reference, "k--", linewidth=1, label="reference (oracle)")
    distances.axhline(
        document["tolerance"], color="red", linestyle=":", label="tolerance"
    )
    curves.set(
        yscale="log",
        xlabel="epoch",
        ylabel="training loss (mean CCE)",
        title="loss curves (they overlap)",
    )
    distances.set(
        yscale="log",
        xlabel="epoch",
        ylabel="|loss - reference| / reference",
        title=f"distance from the reference (0 drawn at {PLOT_FLOOR:g})",
    )
    for axes in (curves, distances):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.legend(loc="outside right upper", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


PLOT_ALT = "loss curves of every backend and their distance from the reference"


def train_section_html(results: dict) -> str:
    """Return the report's training section as an HTML fragment.

    `results` is a train.json document. The fragment contains the settings, the
    per-backend table and the loss-curve plot as an embedded base64 PNG. All
    text from the document is escaped.
    """
    escape = html.escape
    config = results["config"]
    pair = results.get("largest_pair_difference")
    header = "".join(f"<th>{escape(heading)}</th>" for _, heading in COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(format_cell(key, row[key]))}</td>" for key, _ in COLUMNS
        )
        + "</tr>"
        for row in summary_rows(results)
    )
    if pair:
        pair_text = (
            f"Largest loss difference between two backends: {pair['value']:.2g} "
            f"(relative), between {pair['backends'][0]} and {pair['backends'][1]} "
            f"at epoch {pair['epoch']}."
        )
    else:
        pair_text = "Fewer than two backends ran, so no pair is compared."
    settings = (
        f"Dense {config['hidden_units']} units, ReLU, dense, softmax + CCE, trained "
        f"with plain SGD (learning rate {config['learning_rate']}, batch "
        f"{config['batch_size']}) for {config['epochs']} epochs on "
        f"{results['train_samples']} of scikit-learn's digits images, tested on "
        f"{results['test_samples']}; {config['dtype']}, seed {config['seed']}. "
        f"Only the output layer's gradient changes between rows. Loss curves must "
        f"stay within {results['tolerance']:.2g} (relative) of the float64 "
        f"reference: {results['tolerance_rule']}."
    )
    image = base64.b64encode(loss_curve_png(results)).decode("ascii")
    return (
        '<section id="training">\n'
        "<h2>Training on the digits data set</h2>\n"
        f"<p>{escape(settings)}</p>\n"
        f"<p>{escape(pair_text)}</p>\n"
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>{body}</tbody>\n</table>\n"
        f'<img alt="{PLOT_ALT}" src="data:image/png;base64,{image}">\n'
        "</section>\n"
    )
