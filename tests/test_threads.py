"""Setting one thread count for BLAS, numba, PyTorch and XLA, and reading it back."""

from __future__ import annotations

import numba
import pytest

from softgrad import threads


@pytest.fixture
def restore_threads(monkeypatch):
    """Restore every library's thread count after the test."""
    monkeypatch.delenv(threads.XLA_THREADS_VARIABLE, raising=False)
    before = numba.get_num_threads()
    yield
    for limits in threads._limits:
        limits.restore_original_limits()
    threads._limits.clear()
    numba.set_num_threads(before)


def test_set_one_thread_everywhere(restore_threads):
    """After set_threads(1), BLAS, numba and XLA's variable all report 1."""
    counts = threads.set_threads(1)

    assert counts["numba"] == 1
    assert counts["blas"] == 1
    assert counts["xla"] == 1
    assert numba.get_num_threads() == 1


def test_torch_follows_when_loaded(restore_threads):
    """A loaded torch gets the same count."""
    torch = pytest.importorskip(
        "torch", reason='torch is not installed; pip install -e ".[peers]"'
    )
    before = torch.get_num_threads()
    try:
        counts = threads.set_threads(1)
        assert counts["torch"] == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("count", [0, -1, 10**6])
def test_count_out_of_range_rejected(count):
    """A count below 1 or above numba's cores raises a ValueError naming it."""
    with pytest.raises(ValueError, match=f"`count` is {count}"):
        threads.set_threads(count)


def test_count_must_be_int():
    """A non-integer count raises a TypeError."""
    with pytest.raises(TypeError, match="`count`"):
        threads.set_threads(1.5)


def test_counts_without_xla_variable(monkeypatch):
    """Without PJRT_NPROC, XLA's count is reported as None (every core)."""
    monkeypatch.delenv(threads.XLA_THREADS_VARIABLE, raising=False)

    assert threads.thread_counts()["xla"] is None
