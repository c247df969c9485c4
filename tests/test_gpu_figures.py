"""The closing figures of a GPU run, computed from hand-made raw results."""

from __future__ import annotations

import json
import math

import pytest

from softgrad import gpu_figures
from softgrad.grid import Size, bytes_moved


def _benchmark(family, backend, size, dtype, median, device=None):
    extra = {
        "family": family,
        "backend": backend,
        "n": size.n,
        "classes": size.classes,
        "dtype": dtype,
    }
    if device is not None:
        extra["device"] = device
    return {
        "name": f"{backend}-{size}",
        "extra_info": extra,
        "stats": {"median": median},
    }


def _write(path, benchmarks):
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


LOGITS = "cce_logits_backward"
IMAGENET = Size(4096, 1000)


@pytest.fixture
def run_file(tmp_path):
    return _write(
        tmp_path / "run.json",
        [
            _benchmark(LOGITS, "cupy_kernel", IMAGENET, "float32", 1e-5),
            _benchmark(LOGITS, "cupy_kernel", IMAGENET, "bfloat16", 8e-6),
            _benchmark(LOGITS, "logits_numba", IMAGENET, "float32", 1e-3),
            _benchmark(LOGITS, "logits_numpy", IMAGENET, "float32", 4e-3),
            _benchmark(LOGITS, "logits_numba", IMAGENET, "float64", 2e-3),
            _benchmark(LOGITS, "cupy_kernel", Size(64, 10), "float32", 5e-6),
        ],
    )


def test_figures_by_hand(run_file):
    """Share and speedup match a hand computation for a float32 GPU case."""
    timings = gpu_figures.read_timings([run_file])

    figures = gpu_figures.closing_figures(timings, bandwidth_gb_per_s=4000.0)

    row = figures[figures["dtype"] == "float32"].iloc[0]
    moved = 2 * 4096 * 1000 * 4 + 4096 * 8  # logits in, gradient out, int64 labels
    assert moved == bytes_moved(LOGITS, IMAGENET, "float32")
    assert row["gb_per_s"] == pytest.approx(moved / 1e-5 / 1e9)
    assert row["bandwidth_share"] == pytest.approx(moved / 1e-5 / 1e9 / 4000.0)
    assert row["best_cpu_backend"] == "logits_numba"
    assert row["speedup_vs_cpu"] == pytest.approx(100.0)


def test_16_bit_compared_with_float32_cpu(run_file):
    """A bfloat16 GPU case is compared with the fastest float32 CPU backend."""
    figures = gpu_figures.closing_figures(gpu_figures.read_timings([run_file]), 4000.0)

    row = figures[figures["dtype"] == "bfloat16"].iloc[0]

    assert row["best_cpu_dtype"] == "float32"
    assert row["speedup_vs_cpu"] == pytest.approx(1e-3 / 8e-6)
    assert row["gb_per_s"] == pytest.approx(
        (2 * 4096 * 1000 * 2 + 4096 * 8) / 8e-6 / 1e9
    )


def test_only_figure_sizes_kept(run_file):
    """GPU cases outside the three figure sizes are left out."""
    figures = gpu_figures.closing_figures(gpu_figures.read_timings([run_file]), None)

    assert set(zip(figures["n"], figures["classes"])) == {(4096, 1000)}
    assert len(figures) == 2


def test_missing_bandwidth_and_cpu_are_nan(tmp_path):
    """Without a bandwidth or a CPU timing, share and speedup are NaN."""
    path = _write(
        tmp_path / "gpu-only.json",
        [_benchmark(LOGITS, "cupy_kernel", IMAGENET, "float32", 1e-5)],
    )

    row = gpu_figures.closing_figures(gpu_figures.read_timings([path]), None).iloc[0]

    assert math.isnan(row["bandwidth_share"])
    assert math.isnan(row["speedup_vs_cpu"])
    assert row["best_cpu_backend"] is None


def test_last_file_wins(tmp_path):
    """A case timed in two files takes its time from the later file."""
    first = _write(
        tmp_path / "a.json",
        [_benchmark(LOGITS, "cupy_kernel", IMAGENET, "float32", 1.0)],
    )
    second = _write(
        tmp_path / "b.json",
        [_benchmark(LOGITS, "cupy_kernel", IMAGENET, "float32", 2.0)],
    )

    timings = gpu_figures.read_timings([first, second])

    assert timings["median_s"].tolist() == [2.0]


def test_device_from_file_then_registry(tmp_path):
    """The device comes from extra_info, else from the registry by name."""
    path = _write(
        tmp_path / "devices.json",
        [
            _benchmark(
                LOGITS, "renamed_kernel", IMAGENET, "float32", 1.0, device="gpu"
            ),
            _benchmark(LOGITS, "torch_cuda", IMAGENET, "float32", 1.0),
            _benchmark(LOGITS, "logits_numpy", IMAGENET, "float32", 1.0),
        ],
    )

    devices = gpu_figures.read_timings([path]).set_index("backend")["device"]

    assert devices.to_dict() == {
        "renamed_kernel": "gpu",
        "torch_cuda": "gpu",
        "logits_numpy": "cpu",
    }


def test_malformed_file_named(tmp_path):
    """A file without softgrad's benchmark fields is rejected, naming it."""
    path = _write(tmp_path / "foreign.json", [{"name": "x", "stats": {"median": 1}}])

    with pytest.raises(gpu_figures.ResultsError, match="foreign.json"):
        gpu_figures.read_timings([path])


def test_not_json_named(tmp_path):
    """A truncated file is rejected, naming it."""
    path = tmp_path / "cut.json"
    path.write_text('{"benchmarks": [')

    with pytest.raises(gpu_figures.ResultsError, match="cut.json"):
        gpu_figures.read_timings([path])


def test_bandwidth_from_run_machine(tmp_path):
    """Without --probe the bandwidth comes from the run's stored machine."""
    path = tmp_path / "run.json"
    machine = {"cpu": "x", "gpu_name": "GPU", "gpu_bandwidth_gb_per_s": 3000.0}
    path.write_text(json.dumps({"benchmarks": [], "softgrad": {"machine": machine}}))

    assert gpu_figures.bandwidth_from_runs([path]) == (3000.0, "")


def test_bandwidth_missing_from_old_run(tmp_path):
    """A run stored without GPU fields gives no bandwidth, and says so."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": [], "softgrad": {"machine": {}}}))

    bandwidth, reason = gpu_figures.bandwidth_from_runs([path])

    assert bandwidth is None
    assert "--probe" in reason


def test_bandwidth_reason_from_probe(tmp_path):
    """A probe without a device gives no bandwidth, and its reason."""
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"gpu_reason": "no CUDA device found: none"}))

    assert gpu_figures.bandwidth_from_probe(path) == (
        None,
        "no CUDA device found: none",
    )


def test_command_prints_table(run_file, tmp_path, capsys):
    """The command prints the bandwidth line and one table row per GPU case."""
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"gpu_bandwidth_gb_per_s": 4000.0}))

    status = gpu_figures.main([str(run_file), "--probe", str(probe)])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0] == "Measured device copy bandwidth: 4000 GB/s"
    rows = [line for line in lines if "cupy_kernel" in line]
    assert len(rows) == 2
    assert "100×" in rows[0]
    assert "82 %" in rows[0]


def test_command_without_gpu_cases_fails(tmp_path, capsys):
    """With no GPU case at the figure sizes the command exits 1 with the reason."""
    path = _write(
        tmp_path / "cpu.json",
        [_benchmark(LOGITS, "logits_numpy", IMAGENET, "float32", 1.0)],
    )

    status = gpu_figures.main([str(path)])

    assert status == 1
    assert "no GPU backend was timed" in capsys.readouterr().err
