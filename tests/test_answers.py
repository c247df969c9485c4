"""Tests of the report's one-sentence answers, on summaries with hand-set times."""

from __future__ import annotations

import math

import pandas as pd

from softgrad import answers

SOFTMAX = "softmax_backward"
NBSP = "\u00a0"


def make_summary(times: dict, dtype: str = "float64") -> pd.DataFrame:
    """Build summary rows from {(n, classes): {backend: seconds}}, with speedups."""
    rows = []
    for (n, classes), by_backend in times.items():
        baseline = by_backend.get("looped_jacobian", math.nan)
        for backend, seconds in by_backend.items():
            rows.append(
                {
                    "family": SOFTMAX,
                    "n": n,
                    "classes": classes,
                    "dtype": dtype,
                    "backend": backend,
                    "median_s": seconds,
                    "speedup_vs_baseline": baseline / seconds,
                }
            )
    return pd.DataFrame(rows)


def sentence(times: dict) -> str:
    (text,) = answers.answers(make_summary(times))
    return text.replace(NBSP, " ")


def test_answer_single_winner():
    """One backend fastest everywhere: 'all 3 sizes' and the speedup range."""
    text = sentence(
        {
            (1, 10): {"numba_serial": 1e-6, "looped_jacobian": 1e-5},
            (10, 10): {"numba_serial": 2e-6, "looped_jacobian": 1e-4},
            (100, 10): {"numba_serial": 4e-6, "looped_jacobian": 1e-3},
        }
    )
    assert text.startswith(
        "softmax_backward (float64): numba_serial is fastest at all 3 sizes"
        " (N × L 10 to 1,000)"
    )
    assert "10.0× to 250× faster than looped_jacobian," in text
    assert "with a median lead of 50.0× over the runner-up." in text


def test_answer_crossover_names_both():
    """Serial wins the small size, parallel the two large ones, with their sizes."""
    text = sentence(
        {
            (1, 10): {"numba_serial": 1e-6, "numba_parallel": 3e-6},
            (100, 10): {"numba_serial": 4e-6, "numba_parallel": 2e-6},
            (1000, 10): {"numba_serial": 4e-5, "numba_parallel": 1e-5},
        }
    )
    assert (
        "numba_serial is fastest at 1 of 3 sizes (N × L = 10) and numba_parallel"
        " at 2 (N × L 1,000 to 10,000)"
    ) in text


def test_answer_baseline_never_timed():
    """Without a baseline time the sentence states that instead of a speedup."""
    text = sentence({(4, 5): {"numpy_vjp": 1e-5, "numba_serial": 2e-5}})
    assert "at the only size, 4 × 5" in text
    assert "where looped_jacobian was never timed" in text
    assert "with a lead of 2.00× over the runner-up." in text


def test_answer_baseline_partly_timed():
    """A speedup range over fewer sizes than timed ends in "where it ran"."""
    text = sentence(
        {
            (1, 10): {"numba_serial": 1e-6, "looped_jacobian": 5e-6},
            (100, 10): {"numba_serial": 1e-5},
        }
    )
    assert "is fastest at both sizes" in text
    assert "5.00× faster than looped_jacobian where it ran" in text


def test_answer_counts_extra_winners():
    """Past three winners, the rest are counted, not named."""
    times = {
        (n, 10): {name: 1e-6, "numba_serial": 2e-6}
        for n, name in zip(
            (1, 2, 3, 4, 5),
            ("numpy_vjp", "einsum_jacobian", "matmul_jacobian", "numba_parallel", "x"),
        )
    }
    text = sentence(times)
    assert "numpy_vjp is fastest at 1 of 5 sizes" in text
    assert "and 2 other backends at 2" in text
    assert "numba_parallel" not in text


def test_answer_one_per_family():
    """Two families give two sentences, in the summary's order."""
    first = make_summary({(1, 10): {"numba_serial": 1e-6}})
    second = first.assign(family="cce_softmax_backward")
    result = answers.answers(pd.concat([first, second]))
    assert [text.split(" ")[0] for text in result] == [
        "softmax_backward",
        "cce_softmax_backward",
    ]


def test_answer_prefers_float64():
    """A family timed in both dtypes is described in float64."""
    summary = pd.concat(
        [
            make_summary({(1, 10): {"numba_serial": 1e-6}}, "float32"),
            make_summary({(1, 10): {"numpy_vjp": 1e-6}}, "float64"),
        ]
    )
    (text,) = answers.answers(summary)
    assert text.startswith("softmax_backward (float64): numpy_vjp")
