"""Tests of the digits training workload: backprop, agreement across backends,
divergence detection, result files, the report section and `softgrad train`."""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import impls
from softgrad import cli, train

pytest.importorskip(
    "sklearn", reason="scikit-learn provides the digits data set that training uses"
)

# A run of seconds: 3 epochs of 10 batches each.
SHORT = train.TrainConfig(epochs=3, train_samples=300)


@dataclass
class FakeBackend:
    """A backend made up by a test, with the attributes train_backends reads."""

    name: str
    family: str
    function: Callable
    available: bool = True
    reason: str = ""
    compiled: bool = False

    def __call__(self, *arrays):
        return self.function(*arrays)


def _scaled(factor: float) -> FakeBackend:
    """Return fused_numpy with its gradient multiplied by `factor`."""
    fused = impls.get("cce_softmax_backward", "fused_numpy")
    return FakeBackend(
        "scaled", "cce_softmax_backward", lambda p, y: fused(p, y) * factor
    )


@pytest.fixture(scope="module")
def short_results():
    return train.train_backends(train.select_backends(), SHORT)


def test_backends_agree_on_short_run(short_results):
    """Every available backend stays within the tolerance of the reference curve."""
    available = [b for b in train.select_backends() if b.available]
    assert len(short_results.runs) == len(available)
    for run in short_results.runs:
        assert run.diverged_epoch is None, run.key
        assert run.max_difference <= short_results.tolerance, run.key
    pair = short_results.largest_pair_difference()
    assert pair["value"] <= short_results.tolerance


def test_short_run_lowers_loss(short_results):
    """Three epochs of SGD lower the training loss of every run."""
    for run in short_results.runs:
        assert run.loss_curve[-1] < run.loss_curve[0], run.key


def test_short_run_curve_length(short_results):
    """A loss curve contains the loss before training and after each epoch."""
    for run in short_results.runs:
        assert len(run.loss_curve) == SHORT.epochs + 1
        assert len(run.epoch_s) == SHORT.epochs


def test_gradient_time_within_epoch(short_results):
    """The backend call takes part of the epoch, never more than all of it."""
    for run in short_results.runs:
        assert 0 < run.gradient_share < 1, run.key


def test_wrong_backend_caught_with_epoch():
    """A gradient off by one part in a million diverges at epoch 1."""
    results = train.train_backends([_scaled(1 + 1e-6)], SHORT)
    with pytest.raises(train.DivergenceError) as error:
        results.raise_for_divergence()
    assert error.value.epoch == 1
    assert "epoch 1" in str(error.value)
    assert error.value.difference > results.tolerance


def test_nan_backend_caught():
    """A backend that returns NaN diverges at epoch 1."""
    results = train.train_backends([_scaled(np.nan)], SHORT)
    assert results.runs[0].diverged_epoch == 1


def test_nan_backend_largest_pair():
    """A NaN loss curve makes the largest pair difference NaN, not 0."""
    results = train.train_backends([_scaled(1.0), _scaled(np.nan)], SHORT)
    pair = results.largest_pair_difference()
    assert np.isnan(pair["value"])
    assert pair["epoch"] == 1


def test_unavailable_backend_skipped():
    """An unavailable backend is listed as skipped with its reason."""
    missing = _scaled(1.0)
    missing.available = False
    missing.reason = "made-up library is not installed"
    results = train.train_backends([missing], SHORT)
    assert results.runs == []
    assert results.skipped[0]["reason"] == "made-up library is not installed"


def test_training_is_deterministic():
    """Two runs of one backend give bit-identical loss curves."""
    backend = impls.get("cce_logits_backward", "logits_numpy")
    digits = train.load_digits_split(SHORT.seed, SHORT.dtype)
    gradient = train.output_gradient(backend, backend.family)
    first = train.train_network(gradient, SHORT, digits).loss_curve
    second = train.train_network(gradient, SHORT, digits).loss_curve
    assert first == second


def _batch_loss(network, x, labels):
    return train.mean_cross_entropy(network.logits(x), labels)


def test_step_matches_finite_differences():
    """One SGD step moves each parameter by the finite-difference gradient."""
    rng = np.random.default_rng(5)
    x = rng.random((6, 8))
    labels = rng.integers(0, 4, 6)
    network = train.Network.initial(8, 5, 4, seed=9, dtype="float64")
    before = {name: getattr(network, name).copy() for name in ("w1", "b1", "w2", "b2")}
    oracle = impls.reference("cce_logits_backward")
    gradient = train.output_gradient(oracle, "cce_logits_backward")

    stepped = train.Network(**{name: value.copy() for name, value in before.items()})
    stepped.step(x, labels, gradient, learning_rate=1.0)

    step = 1e-6
    for name, values in before.items():
        expected = np.zeros_like(values)
        for index in np.ndindex(values.shape):
            plus = train.Network(**{k: v.copy() for k, v in before.items()})
            minus = train.Network(**{k: v.copy() for k, v in before.items()})
            getattr(plus, name)[index] += step
            getattr(minus, name)[index] -= step
            difference = _batch_loss(plus, x, labels) - _batch_loss(minus, x, labels)
            expected[index] = difference / (2 * step)
        moved = values - getattr(stepped, name)
        assert np.abs(moved - expected).max() < 1e-7, name


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("softmax_backward", "numpy_vjp"),
        ("cce_softmax_backward", "fused_numpy"),
        ("cce_logits_backward", "logits_numpy"),
    ],
)
def test_output_gradient_is_mean_cce_gradient(family, name):
    """Each family's output gradient is dL/dz of the batch's mean CCE."""
    rng = np.random.default_rng(6)
    logits = 2 * rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    gradient, seconds = train.output_gradient(impls.get(family, name), family)(
        logits, labels
    )
    expected = impls.reference("cce_logits_backward")(logits, labels)
    assert np.abs(gradient - expected).max() < 1e-15
    assert seconds > 0


def test_tolerance_rule():
    """The tolerance is the factor times steps, classes and machine epsilon."""
    tolerance = train.loss_tolerance(steps=100, classes=10, dtype="float64")
    assert tolerance == train.TOLERANCE_FACTOR * 100 * 10 * 2.0**-52


def test_results_files_written(short_results, tmp_path):
    """train.json and train.csv are written whole, with one row per backend."""
    json_path, csv_path = train.write_results(short_results.to_dict(), tmp_path)
    document = json.loads(json_path.read_text())
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert document["schema"] == train.SCHEMA
    assert len(document["runs"]) == len(short_results.runs)
    assert list(rows[0]) == [key for key, _ in train.COLUMNS]
    # One row per backend: those trained, then those skipped with a reason.
    assert len(rows) == len(short_results.runs) + len(short_results.skipped)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv", "train.json"]


def test_nan_written_as_null(tmp_path):
    """A NaN loss is written as JSON null, which strict JSON readers accept."""
    results = train.train_backends([_scaled(np.nan)], SHORT)
    json_path, _ = train.write_results(results.to_dict(), tmp_path)
    text = json_path.read_text()
    assert "NaN" not in text
    assert json.loads(text)["runs"][0]["loss_curve"][-1] is None


def test_load_results_rejects_foreign_file(tmp_path):
    """A JSON file that is not training results is rejected, naming it."""
    path = tmp_path / "other.json"
    path.write_text('{"benchmarks": []}')
    with pytest.raises(train.TrainError, match="other.json"):
        train.load_results(path)


def test_section_html_escapes_text(short_results):
    """The report section escapes text and embeds the plot as a PNG."""
    document = short_results.to_dict()
    document["runs"][0]["backend"] = "<script>x</script>"
    section = train.train_section_html(document)
    image = section.split("data:image/png;base64,")[1].split('"')[0]
    assert "<script>" not in section
    assert "&lt;script&gt;x&lt;/script&gt;" in section
    assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")


def test_section_html_has_row_per_backend(short_results):
    """The report section's table has one body row per backend, run or skipped."""
    section = train.train_section_html(short_results.to_dict())
    body = section.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == len(short_results.runs) + len(short_results.skipped)


def test_cli_train_writes_files(tmp_path, capsys):
    """`softgrad train` prints the table and writes both result files."""
    status = cli.main(
        [
            "train",
            "--epochs=1",
            "--families=cce_logits_backward",
            "--backends=logits_numpy",
            f"--results={tmp_path}",
        ]
    )
    output = capsys.readouterr().out
    assert status == 0
    assert "logits_numpy" in output
    assert (tmp_path / "train.json").is_file()
    assert (tmp_path / "train.csv").is_file()


def test_cli_train_rejects_unknown_backend(tmp_path, capsys):
    """An unknown backend name stops `softgrad train` with status 2, naming it."""
    status = cli.main(["train", "--backends=nope", f"--results={tmp_path}"])
    assert status == 2
    assert "`nope`" in capsys.readouterr().err


def test_cli_train_rejects_zero_epochs(tmp_path, capsys):
    """--epochs=0 stops `softgrad train` with status 2, naming the option."""
    status = cli.main(["train", "--epochs=0", f"--results={tmp_path}"])
    assert status == 2
    assert "`epochs`" in capsys.readouterr().err


def test_cli_train_fails_on_divergence(tmp_path, capsys, monkeypatch):
    """A diverging backend makes `softgrad train` exit 1, naming the epoch."""
    monkeypatch.setattr(
        train, "select_backends", lambda families, names: [_scaled(1 + 1e-6)]
    )
    status = cli.main(["train", "--epochs=2", f"--results={tmp_path}"])
    error = capsys.readouterr().err
    assert status == 1
    assert "epoch 1" in error
    assert (tmp_path / "train.json").is_file()
