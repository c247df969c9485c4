"""The sweep plugin's thread option and what it records in the benchmark JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def run_sweep(tmp_path, *options):
    """Run a one-size sweep of two softmax_backward backends; return the process."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPOSITORY / "tests" / "benchmarks"),
            "-p",
            "no:cacheprovider",
            "-q",
            "--benchmark-only",
            f"--benchmark-json={tmp_path / 'run.json'}",
            "--benchmark-max-time=0.001",
            "--benchmark-min-rounds=1",
            "--softgrad-families=softmax_backward",
            "--softgrad-backends=numpy_vjp,numba_auto",
            "--softgrad-sizes=4x5",
            "--softgrad-dtypes=float64",
            *options,
        ],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=300,
    )


def test_threads_recorded_in_json(tmp_path):
    """--softgrad-threads=1 sets every library to 1 thread and the JSON records it."""
    done = run_sweep(tmp_path, "--softgrad-threads=1")

    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "run.json").read_text())
    threads = data["softgrad"]["threads"]
    assert threads["requested"] == 1
    assert threads["numba"] == 1
    assert threads["blas"] == 1
    assert threads["xla"] == 1
    for benchmark in data["benchmarks"]:
        assert benchmark["extra_info"]["threads"] == 1


def test_compile_seconds_recorded(tmp_path):
    """A compiled backend records its warm-up and its numba compile seconds."""
    done = run_sweep(tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "run.json").read_text())
    extra = {b["extra_info"]["backend"]: b["extra_info"] for b in data["benchmarks"]}
    assert extra["numba_auto"]["compile_s"] > 0
    assert extra["numba_auto"]["jit_compile_s"] >= 0
    assert extra["numba_auto"]["jit_compile_s"] <= extra["numba_auto"]["compile_s"]
    assert extra["numpy_vjp"]["jit_compile_s"] is None


def test_bad_thread_count_is_usage_error(tmp_path):
    """A thread count of 0 stops pytest with a usage error naming the option."""
    done = run_sweep(tmp_path, "--softgrad-threads=0")

    assert done.returncode == 4
    assert "--softgrad-threads" in done.stderr
