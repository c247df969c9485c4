"""Tests of the cross-entropy options (reduction, weight, ignore_index,
label_smoothing) of every CCE backend: finite differences, PyTorch, rejections.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import impls
from impls.reference import cross_entropy, softmax
from softgrad.cases import TOLERANCE, relative_error

CCE_FAMILIES = ("cce_softmax_backward", "cce_logits_backward")
N, L = 7, 5
IGNORED_ROW = 2  # the row whose label equals ignore_index, when one is


def _backends():
    return [b for f in CCE_FAMILIES for b in impls.backends(f) if b.available]


BACKENDS = _backends()
BACKEND_IDS = [b.key for b in BACKENDS]


def _weight():
    return np.random.default_rng(3).uniform(0.2, 2.0, L)


def _option_cases():
    """Every combination of the four options, with index labels and one-hot labels."""
    cases = []
    for reduction, weighted, ignore, smoothing in itertools.product(
        ("mean", "sum", "none"), (False, True), (None, -100, 3), (0.0, 0.3)
    ):
        options = {"reduction": reduction, "label_smoothing": smoothing}
        if weighted:
            options["weight"] = _weight()
        if ignore == 3:
            options["ignore_index"] = 3
        name = f"index-{reduction}-w{int(weighted)}-ignore{ignore}-ls{smoothing}"
        cases.append(pytest.param("index", ignore, options, id=name))
    for reduction, weighted, smoothing in itertools.product(
        ("mean", "sum", "none"), (False, True), (0.0, 0.3)
    ):
        options = {"reduction": reduction, "label_smoothing": smoothing}
        if weighted:
            options["weight"] = _weight()
        name = f"onehot-{reduction}-w{int(weighted)}-ls{smoothing}"
        cases.append(pytest.param("onehot", None, options, id=name))
    return cases


OPTION_CASES = _option_cases()


def _inputs(kind, ignore, dtype="float64"):
    """Return seeded logits and labels; with `ignore`, row 2's label equals it."""
    rng = np.random.default_rng(11)
    logits = (2.0 * rng.standard_normal((N, L))).astype(dtype)
    labels = rng.integers(0, L, N)
    labels[labels == 3] = 1  # class 3 appears only where it is ignored
    if ignore is not None:
        labels[IGNORED_ROW] = ignore
    if kind == "onehot":
        return logits, np.eye(L, dtype=dtype)[labels]
    return logits, labels


def _arguments(backend, logits, labels):
    if backend.family == "cce_logits_backward":
        return logits, labels
    return np.asarray(softmax(logits), dtype=logits.dtype), labels


def _finite_difference_gradient(logits, labels, options, step=1e-5):
    """Return the central-difference gradient of the loss (summed for "none")."""
    gradient = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += step
        minus[index] -= step
        difference = np.sum(cross_entropy(plus, labels, **options)) - np.sum(
            cross_entropy(minus, labels, **options)
        )
        gradient[index] = difference / (2 * step)
    return gradient


@pytest.mark.parametrize(("kind", "ignore", "options"), OPTION_CASES)
def test_reference_matches_finite_differences(kind, ignore, options):
    """The reference gradient is the derivative of the reference loss."""
    logits, labels = _inputs(kind, ignore)
    expected = _finite_difference_gradient(logits, labels, options)
    gradient = impls.reference("cce_logits_backward")(logits, labels, **options)
    assert np.abs(gradient - expected).max() < 1e-8


@pytest.mark.parametrize(("kind", "ignore", "options"), OPTION_CASES)
def test_reference_from_probs_matches_logits(kind, ignore, options):
    """The probability reference gives the same gradient as the logits one."""
    logits, labels = _inputs(kind, ignore)
    probs = np.asarray(softmax(logits), dtype=np.float64)
    from_probs = impls.reference("cce_softmax_backward")(probs, labels, **options)
    from_logits = impls.reference("cce_logits_backward")(logits, labels, **options)
    assert relative_error(from_probs, from_logits) < 1e-13


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("kind", "ignore", "options"), OPTION_CASES)
@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_backend_matches_reference(backend, kind, ignore, options, dtype):
    """Every CCE backend gives the reference gradient for every option."""
    logits, labels = _inputs(kind, ignore, dtype)
    arguments = _arguments(backend, logits, labels)
    expected = impls.reference(backend.family)(*arguments, **options)
    result = backend(*arguments, **options)
    assert result.dtype == np.dtype(dtype)
    assert relative_error(result, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize(("kind", "ignore", "options"), OPTION_CASES)
def test_reference_matches_torch(kind, ignore, options):
    """The reference loss and gradient equal torch.nn.functional.cross_entropy's."""
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed; install it to compare with it"
    )
    logits, labels = _inputs(kind, ignore)
    torch_options = dict(options)
    if "weight" in options:
        torch_options["weight"] = torch.tensor(options["weight"])
    tensor = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(
        tensor, torch.tensor(labels), **torch_options
    )
    loss.sum().backward()
    np.testing.assert_allclose(
        cross_entropy(logits, labels, **options), loss.detach().numpy(), rtol=1e-12
    )
    gradient = impls.reference("cce_logits_backward")(logits, labels, **options)
    np.testing.assert_allclose(gradient, tensor.grad.numpy(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_default_ignore_index_leaves_rows_out(backend):
    """With default options, rows labelled -100 are zero and the mean skips them."""
    logits, labels = _inputs("index", -100)
    kept = labels != -100
    result = backend(*_arguments(backend, logits, labels))
    on_kept_rows = backend(*_arguments(backend, logits[kept], labels[kept]))
    assert np.all(result[~kept] == 0)
    assert relative_error(result[kept], on_kept_rows) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_class_ignore_index_leaves_rows_out(backend):
    """With ignore_index=3, rows of class 3 are zero and the mean skips them."""
    logits, labels = _inputs("index", 3)
    kept = labels != 3
    result = backend(*_arguments(backend, logits, labels), ignore_index=3)
    on_kept_rows = backend(*_arguments(backend, logits[kept], labels[kept]))
    assert np.all(result[~kept] == 0)
    assert relative_error(result[kept], on_kept_rows) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_mean_is_sum_over_weight_total(backend):
    """The weighted mean equals the weighted sum divided by the kept label weights."""
    logits, labels = _inputs("index", -100)
    weight = _weight()
    arguments = _arguments(backend, logits, labels)
    mean = backend(*arguments, weight=weight)
    total = backend(*arguments, weight=weight, reduction="sum")
    denominator = weight[labels[labels != -100]].sum()
    assert relative_error(mean, total / denominator) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_one_hot_weighted_mean_divides_by_n(backend):
    """With one-hot labels (class probabilities), the weighted mean divides by N."""
    logits, labels = _inputs("onehot", None)
    weight = _weight()
    arguments = _arguments(backend, logits, labels)
    mean = backend(*arguments, weight=weight)
    total = backend(*arguments, weight=weight, reduction="sum")
    assert relative_error(mean, total / N) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_smoothing_one_hot_matches_index(backend):
    """Without weights, one-hot and index labels give the same smoothed gradient."""
    logits, labels = _inputs("index", None)
    one_hot = np.eye(L)[labels]
    by_index = backend(*_arguments(backend, logits, labels), label_smoothing=0.2)
    by_rows = backend(*_arguments(backend, logits, one_hot), label_smoothing=0.2)
    assert relative_error(by_rows, by_index) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_numpy_scalar_defaults_match_plain(backend):
    """Default options given as numpy scalars give the default-path result."""
    logits, labels = _inputs("index", None)
    arguments = _arguments(backend, logits, labels)
    plain = backend(*arguments)
    scalars = backend(
        *arguments,
        reduction=np.str_("mean"),
        ignore_index=np.int64(-100),
        label_smoothing=np.float64(0.0),
    )
    assert relative_error(scalars, plain) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_all_ignored_gives_zeros(backend):
    """A mean over samples that are all ignored has a zero gradient, as in PyTorch."""
    logits, _ = _inputs("index", None)
    labels = np.full(N, -100)
    result = backend(*_arguments(backend, logits, labels), label_smoothing=0.1)
    assert np.all(result == 0)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_zero_weight_total_gives_nan(backend):
    """A mean over kept samples of total weight 0 is NaN there, as in PyTorch."""
    logits, _ = _inputs("index", None)
    labels = np.zeros(N, dtype=np.int64)
    labels[0] = -100
    weight = np.ones(L)
    weight[0] = 0
    result = backend(*_arguments(backend, logits, labels), weight=weight)
    assert np.all(np.isnan(result[1:]))
    assert np.all(result[0] == 0)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_options_write_into_out(backend):
    """The option path writes into `out` and leaves the inputs unchanged."""
    logits, labels = _inputs("index", -100)
    arguments = _arguments(backend, logits, labels)
    copies = [a.copy() for a in arguments]
    out = np.empty_like(logits)
    result = backend(*arguments, out=out, label_smoothing=0.1, reduction="sum")
    expected = impls.reference(backend.family)(
        *arguments, label_smoothing=0.1, reduction="sum"
    )
    assert result is out
    assert relative_error(out, expected) <= TOLERANCE["float64"]
    for argument, copy in zip(arguments, copies):
        assert np.array_equal(argument, copy)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_underflowed_probability_off_label(backend):
    """A probability of 0 off the label, or in an ignored row, gives finite rows."""
    logits, labels = _inputs("index", -100)
    logits[0] = [800.0, 0, 0, 0, 0]  # softmax is exactly [1, 0, 0, 0, 0]
    labels[0] = 0
    logits[IGNORED_ROW] = [0, 0, 900.0, 0, 0]
    arguments = _arguments(backend, logits, labels)
    options = {"weight": _weight(), "reduction": "sum"}
    result = backend(*arguments, **options)
    expected = impls.reference(backend.family)(*arguments, **options)
    assert np.isfinite(result).all()
    assert relative_error(result, expected) <= TOLERANCE["float64"]


BAD_OPTIONS = [
    pytest.param({"reduction": "avg"}, "`reduction`", id="reduction-unknown"),
    pytest.param({"reduction": None}, "`reduction`", id="reduction-none-object"),
    pytest.param({"weight": np.ones(L + 1)}, "`weight`", id="weight-length"),
    pytest.param({"weight": np.ones((1, L))}, "`weight`", id="weight-2d"),
    pytest.param({"weight": -np.ones(L)}, "`weight`", id="weight-negative"),
    pytest.param(
        {"weight": np.array([1.0, np.nan, 1, 1, 1])}, "`weight`", id="weight-nan"
    ),
    pytest.param({"weight": np.array(["a"] * L)}, "`weight`", id="weight-text"),
    pytest.param({"ignore_index": L}, "`ignore_index`", id="ignore-too-large"),
    pytest.param({"ignore_index": -1}, "`ignore_index`", id="ignore-negative"),
    pytest.param({"ignore_index": 2.0}, "`ignore_index`", id="ignore-float"),
    pytest.param({"ignore_index": True}, "`ignore_index`", id="ignore-bool"),
    pytest.param(
        {"label_smoothing": -0.1}, "`label_smoothing`", id="smoothing-negative"
    ),
    pytest.param({"label_smoothing": 1.5}, "`label_smoothing`", id="smoothing-large"),
    pytest.param(
        {"label_smoothing": float("nan")}, "`label_smoothing`", id="smoothing-nan"
    ),
    pytest.param({"label_smoothing": "0.1"}, "`label_smoothing`", id="smoothing-text"),
]


def _messages(options, kind="index", labels=None):
    """Return {backend key: InputError message} for a call with `options`."""
    logits, default_labels = _inputs(kind, None)
    labels = default_labels if labels is None else labels
    messages = {}
    for backend in BACKENDS:
        with pytest.raises(impls.InputError) as error:
            backend(*_arguments(backend, logits, labels), **options)
        messages[backend.key] = str(error.value)
    with pytest.raises(impls.InputError) as error:
        impls.reference("cce_logits_backward")(logits, labels, **options)
    messages["reference"] = str(error.value)
    return messages


@pytest.mark.parametrize(("options", "argument"), BAD_OPTIONS)
def test_bad_option_rejected_alike(options, argument):
    """Every backend and the reference reject a bad option with one message."""
    messages = _messages(options)
    assert len(set(messages.values())) == 1, messages
    assert argument in next(iter(messages.values()))


def test_ignore_index_with_one_hot_rejected_alike():
    """A class ignore_index with one-hot labels is rejected alike, as PyTorch does."""
    messages = _messages({"ignore_index": 1}, kind="onehot")
    message = next(iter(messages.values()))
    assert len(set(messages.values())) == 1, messages
    assert "`ignore_index`" in message


def test_label_outside_range_names_ignore_index():
    """A label neither a class nor ignore_index is rejected alike, naming both."""
    labels = np.arange(N) % L
    labels[0] = -7
    messages = _messages({}, labels=labels)
    message = next(iter(messages.values()))
    assert len(set(messages.values())) == 1, messages
    assert "-7" in message
    assert "`ignore_index` (-100)" in message


def test_label_minus_100_rejected_with_other_ignore_index():
    """With ignore_index=3, a label of -100 is out of range, not ignored."""
    labels = np.arange(N) % L
    labels[0] = -100
    messages = _messages({"ignore_index": 3}, labels=labels)
    message = next(iter(messages.values()))
    assert len(set(messages.values())) == 1, messages
    assert "-100" in message
