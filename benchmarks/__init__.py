"""asv suites: softmax and CCE gradients over softgrad's size grid, and numba compile time."""
