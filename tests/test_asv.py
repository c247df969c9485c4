"""Structure of the asv suites in benchmarks/, checked without building asv environments."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import impls
from softgrad.cases import TOLERANCE, relative_error
from softgrad.grid import DEFAULT_GRID, DTYPES, IMAGENET

REPO = Path(__file__).resolve().parents[1]
SMALLEST = str(DEFAULT_GRID[0])


def load_suite(name):
    """Import benchmarks/<name>.py by path: benchmarks/ is not on sys.path."""
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"asv_suite_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gradients():
    return load_suite("gradients")


@pytest.fixture(scope="module")
def numba_compile():
    return load_suite("numba_compile")


def suite_classes(gradients):
    return [
        gradients.SoftmaxBackward,
        gradients.CceSoftmaxBackward,
        gradients.CceLogitsBackward,
    ]


def cases(gradients):
    """One small case per available backend and dtype: (suite, backend name, dtype).

    An unavailable backend raises NotImplementedError in setup, which asv
    reports as skipped.
    """
    return [
        (suite, name, dtype)
        for suite in suite_classes(gradients)
        for name in suite.params[0]
        if impls.get(suite.family, name).available
        for dtype in DTYPES
    ]


def test_asv_check_passes():
    """`asv check` discovers the suites and finds their signatures valid."""
    pytest.importorskip("asv", reason="asv is not installed: pip install -e '.[test]'")
    completed = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "No problems found" in completed.stdout


def test_params_cover_every_backend(gradients):
    """Each family suite's params are its CPU backends, the grid and the dtypes."""
    for suite in suite_classes(gradients):
        names, sizes, dtypes = suite.params
        cpu = [b.name for b in impls.backends(suite.family) if b.device == "cpu"]
        assert list(names) == cpu
        assert list(sizes) == [str(size) for size in DEFAULT_GRID]
        assert tuple(dtypes) == DTYPES
        assert tuple(suite.param_names) == ("backend", "size", "dtype")


def test_time_gradient_matches_reference(gradients):
    """time_gradient computes the family's gradient on the setup's inputs."""
    for suite_class, backend, dtype in cases(gradients):
        suite = suite_class()
        suite.setup(backend, SMALLEST, dtype)
        result = suite.backend.to_numpy(suite.time_gradient(backend, SMALLEST, dtype))
        expected = impls.reference(suite.family)(*suite.arrays)
        error = relative_error(result, expected)
        assert error <= TOLERANCE[dtype], f"{suite.family}/{backend} {dtype}: {error}"


def test_time_gradient_uses_grid_inputs(gradients):
    """setup hands time_gradient arrays of the size named by the param."""
    suite = gradients.SoftmaxBackward()
    size = DEFAULT_GRID[1]
    suite.setup("numpy_vjp", str(size), "float32")
    assert suite.arrays[0].shape == (size.n, size.classes)
    assert suite.arrays[0].dtype == np.float32


def test_allocated_bytes_include_output(gradients):
    """track_peak_allocated_bytes counts at least the output array of the call."""
    suite = gradients.CceSoftmaxBackward()
    size = DEFAULT_GRID[5]
    suite.setup("fused_numpy", str(size), "float64")
    traced = suite.track_peak_allocated_bytes("fused_numpy", str(size), "float64")
    assert traced >= size.n * size.classes * 8


def test_memory_guard_skips(gradients):
    """A Jacobian case over the memory limit raises NotImplementedError with the need."""
    suite = gradients.SoftmaxBackward()
    with pytest.raises(NotImplementedError, match="needs .* GiB, limit"):
        suite.setup("einsum_jacobian", str(DEFAULT_GRID[-1]), "float64")


def test_time_budget_skips_looped_jacobian(gradients):
    """The looped Jacobian at the largest ImageNet size is skipped by its predicted time."""
    largest = max(size for size in DEFAULT_GRID if size.classes == IMAGENET)
    suite = gradients.SoftmaxBackward()
    with pytest.raises(NotImplementedError, match="predicted .* s per call"):
        suite.setup("looped_jacobian", str(largest), "float64")


def test_compile_params_are_numba_backends(numba_compile):
    """NumbaCompile covers every numba backend of the registry in each dtype."""
    keys, dtypes = numba_compile.NumbaCompile.params
    expected = [b.key for b in impls.backends() if b.compiled and b.requires == "numba"]
    assert list(keys) == expected
    assert "softmax_backward/numba_parallel" in keys
    assert tuple(dtypes) == DTYPES


def test_compile_uses_given_empty_cache(numba_compile, tmp_path):
    """The compile measurement caches into the empty directory it is given."""
    suite = numba_compile.NumbaCompile()
    suite.setup("softmax_backward/numba_serial", "float64")
    seconds = numba_compile.first_call_seconds(suite.backend, "float64", tmp_path)
    assert seconds > 0
    assert any(tmp_path.rglob("*.nbi"))
