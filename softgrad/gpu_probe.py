"""A description of the first CUDA device: its name, memory and measured copy bandwidth.

`probe()` returns plain JSON types under keys that start with `gpu_`, so that
the result can be merged into the machine description of a run.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np

log = logging.getLogger(__name__)

# Bytes per buffer: many times a GPU's L2 cache (tens of MB), so the copy measures
# device memory. Less is used when a quarter of the free memory is smaller.
COPY_BYTES = 1 << 30
COPY_REPEATS = 20  # copies between two CUDA events
COPY_TRIALS = 5  # the fastest trial is kept
THREADS = 256

COPY_SOURCE = r"""
extern "C" __global__ void copy_vectors(
    const float4* source, float4* target, long long count
) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += stride) {
        target[i] = source[i];
    }
}
"""


def probe(measure: bool = True) -> dict:
    """Describe the first CUDA device and, if `measure`, time its copy bandwidth.

    Returns only {"gpu_reason": why} when no device can be used. Memory is in
    bytes and bandwidth in 10^9 bytes per second, bytes read plus bytes written.
    """
    try:
        import cupy
    except ImportError as error:
        return {"gpu_reason": f"cupy is not installed ({error})"}
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        return {"gpu_reason": f"no CUDA device found: {error}"}
    if count == 0:
        return {
            "gpu_reason": "no CUDA device found: the CUDA runtime reports 0 devices"
        }

    properties = cupy.cuda.runtime.getDeviceProperties(0)
    description = {
        "gpu_name": _text(properties["name"]),
        "gpu_count": count,
        "gpu_memory_bytes": int(properties["totalGlobalMem"]),
        "gpu_compute_capability": f"{properties['major']}.{properties['minor']}",
        "gpu_multiprocessors": int(properties["multiProcessorCount"]),
        "gpu_l2_cache_bytes": int(properties["l2CacheSize"]),
        "gpu_driver_version": cupy.cuda.runtime.driverGetVersion(),
        "gpu_runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
        "gpu_cupy_version": cupy.__version__,
    }
    if measure:
        description.update(_measured_bandwidth(cupy))
    log.debug("GPU: %s", description)
    return description


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _measured_bandwidth(cupy) -> dict:
    """Time a device-to-device copy kernel and return the bandwidth fields.

    Any failure (no NVRTC, too little memory, a driver error) is logged and
    returned as `gpu_bandwidth_reason`, because it must not stop a run.
    """
    try:
        free, _ = cupy.cuda.runtime.memGetInfo()
        nbytes = min(COPY_BYTES, free // 4) // 16 * 16
        seconds = copy_seconds(cupy, nbytes)
    except Exception as error:  # noqa: BLE001
        log.warning("GPU bandwidth not measured: %s", error)
        return {"gpu_bandwidth_reason": f"the copy kernel failed: {error}"}
    return {
        "gpu_bandwidth_gb_per_s": 2 * nbytes * COPY_REPEATS / seconds / 1e9,
        "gpu_bandwidth_method": (
            f"copy kernel with 16-byte loads, {nbytes} bytes per buffer, fastest "
            f"of {COPY_TRIALS} trials of {COPY_REPEATS} copies timed by CUDA "
            f"events, bytes read plus bytes written"
        ),
    }


def copy_seconds(cupy, nbytes: int) -> float:
    """Return the fastest time of COPY_REPEATS copies of `nbytes` on the device."""
    kernel = cupy.RawKernel(COPY_SOURCE, "copy_vectors")
    source = cupy.ones(nbytes // 4, dtype=np.float32)
    target = cupy.empty_like(source)
    count = nbytes // 16
    device = cupy.cuda.Device()
    blocks = min(-(-count // THREADS), 32 * device.attributes["MultiProcessorCount"])
    arguments = (source, target, np.int64(count))

    kernel((blocks,), (THREADS,), arguments)  # compiles and warms up
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    fastest = float("inf")
    for _ in range(COPY_TRIALS):
        start.record()
        for _ in range(COPY_REPEATS):
            kernel((blocks,), (THREADS,), arguments)
        stop.record()
        stop.synchronize()
        fastest = min(fastest, cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    if not bool((target == source).all()):
        raise RuntimeError("the copy kernel wrote wrong values")
    return fastest


def describe(description: dict) -> str:
    """Describe the probe's GPU in one line, or say why there is none."""
    if "gpu_name" not in description:
        return f"none ({description.get('gpu_reason', 'not probed')})"
    memory = description["gpu_memory_bytes"] / 2**30
    text = (
        f"{description['gpu_name']}, {memory:.1f} GiB, compute capability "
        f"{description['gpu_compute_capability']}"
    )
    rate = description.get("gpu_bandwidth_gb_per_s")
    if rate:
        return f"{text}, copy bandwidth {rate:.0f} GB/s"
    reason = description.get("gpu_bandwidth_reason", "not measured")
    return f"{text}, copy bandwidth not measured ({reason})"


def main() -> int:
    """Print the probe as JSON: `python -m softgrad.gpu_probe`."""
    logging.basicConfig(level=logging.WARNING)
    json.dump(probe(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
