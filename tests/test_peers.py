"""PyTorch and JAX backends: reference agreement, shared errors, threads, listing."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numba
import numpy as np
import pytest

import impls
from impls import peers
from softgrad.cases import TOLERANCE
from softgrad.grid import Size, make_inputs

LIBRARIES = ("torch", "jax")
PEERS = [pytest.param(b, id=b.key) for b in impls.backends() if b.peer]
SIZES = (Size(1, 3), Size(64, 1000), Size(3, 50257))


def require_library(name: str):
    """Skip the test, with a reason, when the peers extra is not installed."""
    return pytest.importorskip(
        name, reason=f'{name} is not installed; pip install -e ".[peers]"'
    )


def relative_error(result, expected):
    error = np.abs(np.asarray(result, dtype=np.float64) - expected).max()
    return error / np.abs(expected).max()


def fresh(backend):
    """Return a copy of `backend` that loads its library again on first use."""
    return dataclasses.replace(backend, _state={})


def test_every_family_has_both_peers():
    """Each family lists a torch and a jax backend, marked as peers."""
    for family in impls.FAMILIES:
        names = {b.name for b in impls.backends(family) if b.peer}
        assert names == set(LIBRARIES), family


@pytest.mark.parametrize("one_hot", [False, True], ids=["index", "one_hot"])
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", PEERS)
def test_peer_matches_reference(backend, dtype, size, one_hot):
    """A peer's gradient is the float64 reference's within the dtype's tolerance."""
    require_library(backend.name)
    if one_hot and backend.family == "softmax_backward":
        pytest.skip("softmax_backward takes no labels")
    arrays = make_inputs(backend.family, size, dtype, seed=11, one_hot=one_hot)

    result = backend(*arrays)

    expected = impls.reference(backend.family)(*arrays)
    assert result.dtype == np.dtype(dtype)
    assert relative_error(result, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_jax_computes_in_float64(family):
    """JAX keeps float64 inputs in float64, so its error is far below float32's."""
    require_library("jax")
    arrays = make_inputs(family, Size(16, 300), "float64", seed=5)

    result = impls.get(family, "jax")(*arrays)

    expected = impls.reference(family)(*arrays)
    assert relative_error(result, expected) < 1e-13


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_torch_and_jax_agree(family):
    """torch and jax give the same float32 gradient within float32 rounding."""
    require_library("torch")
    require_library("jax")
    arrays = make_inputs(family, Size(32, 777), "float32", seed=2)

    from_torch = impls.get(family, "torch")(*arrays)
    from_jax = impls.get(family, "jax")(*arrays)

    assert relative_error(from_torch, from_jax.astype(np.float64)) < 1e-5


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_torch_inputs_not_copied(family):
    """torch's converted inputs share memory with the numpy arrays."""
    require_library("torch")
    backend = impls.get(family, "torch")
    arrays = make_inputs(family, Size(8, 20), "float64")

    native = backend.convert(*arrays)

    for array, tensor in zip(arrays, native):
        assert np.shares_memory(tensor.numpy(), array)


WRITING_ADAPTERS = {
    "softmax_backward": peers.TORCH_SOFTMAX,
    "cce_softmax_backward": peers.TORCH_PROBS,
}


@pytest.mark.parametrize("family", WRITING_ADAPTERS)
def test_torch_writes_into_out(family):
    """torch writes straight into a C-ordered out= array, with no copy after."""
    require_library("torch")
    backend = impls.get(family, "torch")
    arrays = make_inputs(family, Size(8, 20), "float32")
    out = np.zeros_like(arrays[0])
    native = backend.convert(*arrays)

    result = backend.call_native(*native, out=WRITING_ADAPTERS[family].convert_out(out))

    expected = impls.reference(family)(*arrays)
    assert np.shares_memory(result.numpy(), out)
    assert relative_error(out, expected) <= TOLERANCE["float32"]


@pytest.mark.parametrize("family", impls.FAMILIES)
def test_jax_result_ready_after_call(family):
    """call_native returns a JAX array whose computation has finished."""
    jax = require_library("jax")
    backend = impls.get(family, "jax")
    arrays = make_inputs(family, Size(8, 20), "float64")

    result = backend.call_native(*backend.convert(*arrays))

    assert isinstance(result, jax.Array)
    assert result.is_ready()


BAD_INPUTS = {
    "softmax_backward": lambda a, b: (a, b[:, :2]),
    "cce_softmax_backward": lambda a, b: (a, b + a.shape[1]),
    "cce_logits_backward": lambda a, b: (a.astype(np.float16), b),
}


@pytest.mark.parametrize("backend", PEERS)
def test_peer_rejects_like_numpy(backend):
    """A peer raises the numpy backends' InputError, not its library's own error."""
    require_library(backend.name)
    arrays = make_inputs(backend.family, Size(4, 5), "float64")
    bad = BAD_INPUTS[backend.family](*arrays)
    numpy_backend = next(
        b for b in impls.backends(backend.family) if not b.peer and not b.jacobian
    )

    with pytest.raises(impls.InputError) as raised:
        backend(*bad)
    with pytest.raises(impls.InputError) as expected:
        numpy_backend(*bad)

    assert str(raised.value) == str(expected.value)


def test_torch_uses_numba_threads():
    """torch is given numba's thread count when it loads."""
    torch = require_library("torch")
    peers.load_torch()

    assert torch.get_num_threads() == numba.get_num_threads()


@pytest.mark.parametrize("library", LIBRARIES)
def test_missing_library_listed_unavailable(library, monkeypatch):
    """Without the library, its backends are unavailable and a call raises ImportError."""
    monkeypatch.setitem(sys.modules, library, None)  # makes `import library` fail
    monkeypatch.setattr(peers, "_LOADED", {})
    arrays = make_inputs("softmax_backward", Size(2, 3))

    for family in impls.FAMILIES:
        backend = fresh(impls.get(family, library))
        assert backend.available is False
        assert backend.reason.startswith(f"{library} is not installed (")
        assert ".[peers]" in backend.reason
    backend = fresh(impls.get("softmax_backward", library))
    with pytest.raises(ImportError, match=f"{library} is not installed"):
        backend(*arrays)


@pytest.mark.parametrize("library", LIBRARIES)
def test_registry_reason_without_library(library):
    """In an environment without the library, the registry gives the reason."""
    if importlib.util.find_spec(library) is not None:
        pytest.skip(f"{library} is installed, so its backends are available")
    for family in impls.FAMILIES:
        backend = impls.get(family, library)
        assert backend.available is False
        assert backend.reason.startswith(f"{library} is not installed")
