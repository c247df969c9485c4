"""The bandwidth probe: cache size from sysfs, the kernels' results, GB/s arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from softgrad import bandwidth


def write_cache(folder, index, level, size):
    entry = folder / "cache" / f"index{index}"
    entry.mkdir(parents=True)
    (entry / "level").write_text(f"{level}\n")
    (entry / "size").write_text(f"{size}\n")


def test_last_level_cache_is_highest_level(tmp_path):
    """The size of the highest cache level is returned, whatever the index order."""
    write_cache(tmp_path, 0, 1, "32K")
    write_cache(tmp_path, 1, 3, "32768K")
    write_cache(tmp_path, 2, 2, "1M")

    assert bandwidth.last_level_cache_bytes(tmp_path) == 32 * 2**20


def test_last_level_cache_fallback(tmp_path):
    """Without sysfs cache entries, the documented fallback size is returned."""
    assert bandwidth.last_level_cache_bytes(tmp_path) == bandwidth.FALLBACK_CACHE_BYTES


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512K", 2**19), ("2M", 2**21), ("1G", 2**30), ("4096", 4096)],
)
def test_cache_size_units(text, expected):
    """sysfs sizes in K, M and G and plain bytes are parsed."""
    assert bandwidth._parse_cache_size(text) == expected


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_kernels_compute_stream_results(name):
    """Copy copies and triad computes first + scalar * second, in both libraries."""
    first = np.arange(1000.0)
    second = np.linspace(-1, 1, 1000)
    target = np.zeros(1000)
    copy = getattr(bandwidth, f"_copy_{name}")
    triad = getattr(bandwidth, f"_triad_{name}")

    copy(first, target)
    assert np.array_equal(target, first)

    triad(target, first, second, 3.0)
    assert np.array_equal(target, first + 3.0 * second)


def test_gb_per_s_from_bytes_and_seconds(monkeypatch):
    """Each figure is the bytes of the arrays STREAM counts over the best time."""
    monkeypatch.setattr(bandwidth, "_best_seconds", lambda *args: 0.5)

    result = bandwidth.probe(array_bytes=8 * 1000, repetitions=1)

    array_bytes = 8 * 1000
    assert result["array_bytes"] == array_bytes
    assert result["gb_per_s"]["copy_numba"] == pytest.approx(
        2 * array_bytes / 0.5 / 1e9
    )
    assert result["gb_per_s"]["triad_numpy"] == pytest.approx(
        3 * array_bytes / 0.5 / 1e9
    )


def test_probe_reports_threads_and_positive_figures():
    """A small real probe gives finite positive GB/s and numba's thread count."""
    result = bandwidth.probe(array_bytes=2**20, repetitions=2)

    for name, value in result["gb_per_s"].items():
        assert math.isfinite(value), name
        assert value > 0, name
    assert result["triad_gb_per_s"] == max(
        result["gb_per_s"]["triad_numpy"], result["gb_per_s"]["triad_numba"]
    )
    assert result["threads"]["numba"] >= 1


def test_probe_rejects_no_repetitions():
    """Zero repetitions raise an error naming the argument."""
    with pytest.raises(ValueError, match="`repetitions`"):
        bandwidth.probe(array_bytes=1024, repetitions=0)
