"""Times every cce_logits_backward backend over the shared size grid."""

FAMILY = "cce_logits_backward"


def test_cce_logits_backward(benchmark, case, sweep):
    sweep.run(benchmark, case)
