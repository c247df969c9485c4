"""Times every cce_softmax_backward backend over the shared size grid."""

FAMILY = "cce_softmax_backward"


def test_cce_softmax_backward(benchmark, case, sweep):
    sweep.run(benchmark, case)
