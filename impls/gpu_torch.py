"""PyTorch CUDA's own softmax backward and cross-entropy backward, timed as peers.

The functions take and return CUDA tensors and call PyTorch as a user would;
PyTorch checks the tensors itself. Numpy inputs reach them through the
adapters below, which run the CPU backends' checks on the host first.
"""

from __future__ import annotations

import numpy as np
import torch

from impls import Adapter
from impls._checks import device_inputs

# NOTE: not yet run on a CUDA device; tests/test_gpu.py holds its value tests.


def unavailable_reason() -> str:
    """Return why PyTorch cannot run CUDA kernels here, or "" when it can."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a build without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device found: torch.cuda.is_available() is False"
    return ""


def to_device(array: np.ndarray) -> torch.Tensor:
    """Copy a numpy array to the current CUDA device, bfloat16 included."""
    array = np.ascontiguousarray(array)
    if str(array.dtype) == "bfloat16":
        # torch cannot read ml_dtypes' bfloat16, but it can reinterpret the bits.
        bits = torch.from_numpy(array.view(np.int16))
        return bits.view(torch.bfloat16).to("cuda")
    return torch.as_tensor(array, device="cuda")


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """Copy a tensor to the host; bfloat16 comes back as float32, exactly."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()


class TorchCudaAdapter(Adapter):
    """Checks a family's numpy inputs on the host, then copies them to the GPU."""

    def __init__(self, family: str):
        self.family = family

    def unavailable_reason(self) -> str:
        return unavailable_reason()

    def convert(self, arrays: tuple) -> tuple:
        return tuple(to_device(array) for array in device_inputs(self.family, *arrays))

    def finish(self, result):
        torch.cuda.synchronize()
        return result

    def to_numpy(self, result) -> np.ndarray:
        return to_host(result)

    def memory_available(self) -> int:
        free, _ = torch.cuda.mem_get_info()
        cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
        return free + cached


SOFTMAX = TorchCudaAdapter("softmax_backward")
LOGITS = TorchCudaAdapter("cce_logits_backward")


def torch_softmax_backward(probs: torch.Tensor, dvalues: torch.Tensor) -> torch.Tensor:
    """Compute dL/dz with the kernel behind softmax's backward in autograd."""
    return torch.ops.aten._softmax_backward_data(dvalues, probs, 1, probs.dtype)


def torch_cross_entropy_backward(logits: torch.Tensor, labels: torch.Tensor):
    """Compute dL/dz of the mean cross-entropy from logits, as autograd does.

    The forward log-softmax is part of the work: its output feeds the backward.
    One-hot labels are passed to cross_entropy as class probabilities.
    """
    logits = logits.detach().requires_grad_()
    with torch.enable_grad():
        loss = torch.nn.functional.cross_entropy(logits, labels)
        (gradient,) = torch.autograd.grad(loss, logits)
    return gradient
