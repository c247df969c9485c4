"""Softmax backward through the explicit L x L Jacobian diag(s) - s s^T.

These are the textbook formulations. They exist to be measured against the
Jacobian-free ones, not to be used: they cost O(N L^2) time, and the batched
ones O(N L^2) memory.
"""

from __future__ import annotations

import numpy as np

from impls._checks import matching_pair, output_for


def looped_jacobian(probs, dvalues, *, out=None):
    """Compute dL/dz one sample at a time, building each sample's Jacobian."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    # Each row of the result is written after that row of both inputs is read.
    out = output_for(
        out, probs, {"probs": probs, "dvalues": dvalues}, may_alias=("probs", "dvalues")
    )
    for row, (sample_probs, sample_dvalues) in enumerate(zip(probs, dvalues)):
        column = sample_probs[:, np.newaxis]
        jacobian = np.diagflat(column) - column @ column.T
        out[row] = jacobian @ sample_dvalues
    return out


def _batched_jacobians(probs):
    """Return the (N, L, L) stack of Jacobians, built in one array."""
    jacobians = np.einsum("ij,ik->ijk", probs, probs)
    np.negative(jacobians, out=jacobians)
    diagonal = np.arange(probs.shape[1])
    jacobians[:, diagonal, diagonal] += probs
    return jacobians


def einsum_jacobian(probs, dvalues, *, out=None):
    """Compute dL/dz with all N Jacobians built at once and contracted by einsum."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    # The Jacobians are built before `out` is written, but einsum accumulates
    # into `out` while it still reads `dvalues`.
    out = output_for(
        out, probs, {"probs": probs, "dvalues": dvalues}, may_alias=("probs",)
    )
    np.einsum("ijk,ik->ij", _batched_jacobians(probs), dvalues, out=out)
    return out


def matmul_jacobian(probs, dvalues, *, out=None):
    """Compute dL/dz with all N Jacobians built at once and applied by matmul."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    out = output_for(
        out, probs, {"probs": probs, "dvalues": dvalues}, may_alias=("probs", "dvalues")
    )
    product = np.matmul(_batched_jacobians(probs), dvalues[:, :, np.newaxis])
    out[...] = product[:, :, 0]
    return out
