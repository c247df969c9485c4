"""The GPU probe: a reason without a device, a description and bandwidth with one."""

from __future__ import annotations

import importlib.util
import json

import pytest

import impls
from softgrad import gpu_probe

CUPY_BACKEND = impls.get("softmax_backward", "cupy_kernel")
HAS_CUPY = importlib.util.find_spec("cupy") is not None


@pytest.mark.skipif(CUPY_BACKEND.available, reason="a CUDA device is present here")
def test_probe_without_device_gives_reason():
    """Without a device the probe returns only the reason, naming the cause."""
    expected = "no CUDA device found" if HAS_CUPY else "cupy is not installed"

    description = gpu_probe.probe()

    assert list(description) == ["gpu_reason"]
    assert expected in description["gpu_reason"]


@pytest.mark.skipif(CUPY_BACKEND.available, reason="a CUDA device is present here")
def test_probe_command_prints_json(capsys):
    """`python -m softgrad.gpu_probe` prints the probe as a JSON object."""
    status = gpu_probe.main()

    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert printed == gpu_probe.probe()


@pytest.mark.skipif(
    not CUPY_BACKEND.available, reason=f"needs a CUDA device ({CUPY_BACKEND.reason})"
)
def test_probe_describes_device():
    """With a device the probe names it and measures a positive copy bandwidth."""
    description = gpu_probe.probe()

    assert description["gpu_name"]
    assert description["gpu_memory_bytes"] > 0
    assert description["gpu_bandwidth_gb_per_s"] > 0
    assert "CUDA events" in description["gpu_bandwidth_method"]
    assert json.loads(json.dumps(description)) == description


def test_describe_gpu_line():
    """describe() puts name, memory, capability and bandwidth on one line."""
    description = {
        "gpu_name": "NVIDIA H200",
        "gpu_memory_bytes": 150 * 2**30,
        "gpu_compute_capability": "9.0",
        "gpu_bandwidth_gb_per_s": 4321.4,
    }

    text = gpu_probe.describe(description)

    assert (
        text
        == "NVIDIA H200, 150.0 GiB, compute capability 9.0, copy bandwidth 4321 GB/s"
    )


def test_describe_without_gpu():
    """describe() gives the probe's reason when there is no device."""
    text = gpu_probe.describe({"gpu_reason": "cupy is not installed"})

    assert text == "none (cupy is not installed)"
