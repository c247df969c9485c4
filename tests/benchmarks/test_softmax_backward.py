"""Times every softmax_backward backend over the shared size grid."""

FAMILY = "softmax_backward"


def test_softmax_backward(benchmark, case, sweep):
    sweep.run(benchmark, case)
