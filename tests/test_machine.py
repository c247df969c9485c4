"""Tests of the machine description against other sources of the same facts."""

from __future__ import annotations

import json
import os
import platform
import sys

import numba
import numpy as np
import pandas as pd
import pytest

from softgrad import machine


@pytest.fixture(scope="module")
def described():
    return machine.probe()


def test_probe_is_json(described):
    """The description survives a JSON round trip unchanged."""
    assert json.loads(json.dumps(described)) == described


def test_probe_logical_cores(described):
    """Logical cores match os.cpu_count."""
    assert described["logical_cores"] == os.cpu_count()


def test_probe_physical_cores(described):
    """Physical cores are at least one and at most the logical cores."""
    assert 1 <= described["physical_cores"] <= described["logical_cores"]


@pytest.mark.skipif(
    not hasattr(os, "sysconf"), reason="os.sysconf is missing on this platform"
)
def test_probe_memory(described):
    """Total memory matches the page size times the physical page count."""
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert described["memory_bytes"] == pages


def test_probe_versions(described):
    """Package versions match the modules' own __version__."""
    assert described["numpy"] == np.__version__
    assert described["numba"] == numba.__version__
    assert described["pandas"] == pd.__version__


def test_probe_python(described):
    """The Python version matches sys.version_info."""
    expected = ".".join(str(part) for part in sys.version_info[:3])
    assert described["python"] == expected


def test_probe_blas_matches_numpy_build(described):
    """The BLAS threadpoolctl finds is the one numpy was built with."""
    config = np.show_config(mode="dicts")
    built_with = config["Build Dependencies"]["blas"]["name"]
    blas = [pool for pool in described["thread_pools"] if pool["user_api"] == "blas"]
    assert blas, "threadpoolctl found no BLAS although numpy is imported"
    assert blas[0]["internal_api"] in built_with


def test_probe_blas_threads(described):
    """Each BLAS pool has at least one thread and at most the logical cores."""
    for pool in described["thread_pools"]:
        assert 1 <= pool["num_threads"] <= described["logical_cores"]


def test_probe_numba_threads(described):
    """numba's thread count is the one numba's configuration starts with."""
    assert described["numba_threads"] == numba.config.NUMBA_NUM_THREADS


def test_probe_openblas_environment(monkeypatch):
    """OPENBLAS_CORETYPE is reported when set and None when unset."""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    environment = machine.probe()["environment"]
    assert environment["OPENBLAS_CORETYPE"] == "Haswell"
    assert environment["OPENBLAS_L2_SIZE"] is None


def test_cpu_model_x86_cpuinfo(tmp_path):
    """The model comes from the "model name" line of an x86 cpuinfo."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\n"
        "model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\nflags\t: fpu\n"
    )
    assert machine.cpu_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"


def test_cpu_model_arm_cpuinfo(tmp_path):
    """The model comes from the "Model" line where ARM kernels put it."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nModel\t: Raspberry Pi 4\n")
    assert machine.cpu_model(cpuinfo) == "Raspberry Pi 4"


def test_cpu_model_without_cpuinfo(tmp_path):
    """Without a cpuinfo file the model falls back to the platform module."""
    expected = platform.processor() or platform.machine() or "unknown"
    assert machine.cpu_model(tmp_path / "missing") == expected


def test_describe_pool_blas():
    """A BLAS pool reads as library, version, architecture and threads."""
    pool = {
        "user_api": "blas",
        "internal_api": "openblas",
        "version": "0.3.27",
        "architecture": "Haswell",
        "num_threads": 4,
    }
    assert machine.describe_pool(pool) == "openblas 0.3.27 (Haswell), 4 threads"


def test_describe_pool_openmp():
    """An OpenMP pool, which has no version, reads as its library and threads."""
    pool = {"user_api": "openmp", "internal_api": "openmp", "prefix": "libgomp"}
    pool["num_threads"] = 2
    assert machine.describe_pool(pool) == "libgomp, 2 threads"
