"""Jacobian-free softmax backward in numpy: dz = s * (d - sum(s * d)).

The Jacobian is symmetric, so its product with d reduces to one row dot
product and one elementwise pass, O(N L) in time and memory.
"""

from __future__ import annotations

import numpy as np

from impls._checks import matching_pair, output_for


def numpy_vjp(probs, dvalues, *, out=None):
    """Compute dL/dz without forming any Jacobian."""
    probs, dvalues = matching_pair(probs, dvalues, ("probs", "dvalues"))
    # `out` may be `dvalues`, because the row dot products are taken before the
    # first write; not `probs`, which is read again after `out` is written.
    out = output_for(
        out, probs, {"probs": probs, "dvalues": dvalues}, may_alias=("dvalues",)
    )
    row_dot = np.einsum("ij,ij->i", probs, dvalues)
    np.subtract(dvalues, row_dot[:, np.newaxis], out=out)
    np.multiply(out, probs, out=out)
    return out
