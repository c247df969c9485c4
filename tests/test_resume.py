"""Resuming a run: the --resume option in a command, merging, and an earlier file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softgrad import resume
from softgrad.cases import SoftgradError

DATA = Path(__file__).parent / "data"


def _entry(backend, n, **extra):
    return {
        "family": "softmax_backward",
        "backend": backend,
        "n": n,
        "classes": 10,
        "dtype": "float64",
        **extra,
    }


def _key(backend, n):
    return ("softmax_backward", backend, n, 10, "float64", "default")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--quick", "--resume", "old.json", "--sizes", "3x3"],
        ["run", "--quick", "--resume=old.json", "--sizes", "3x3"],
        ["run", "--quick", "--sizes", "3x3"],
    ],
    ids=["separate", "joined", "absent"],
)
def test_command_without_resume(argv):
    """--resume and its value are dropped, in either spelling, and nothing else."""
    assert resume.command_without_resume(argv) == ["run", "--quick", "--sizes", "3x3"]


def test_resume_command_quotes_paths():
    """The command to finish a run quotes a path with a space, for a shell."""
    command = resume.resume_command(["run", "--quick"], Path("my results/run.json"))

    assert command == "softgrad run --quick --resume 'my results/run.json'"


def _previous(tmp_path, timed, skipped, resumed_from=()):
    data = {
        "benchmarks": [{"extra_info": _entry(b, n)} for b, n in timed],
        "softgrad": {
            "skipped": [_entry(b, n, reason="slow") for b, n in skipped],
            "failed": [],
            "resumed_from": list(resumed_from),
        },
    }
    path = tmp_path / "earlier.json"
    return resume.Previous(path, data, {_key(b, n) for b, n in timed})


def test_merge_keeps_earlier_timings(tmp_path):
    """The merged file has the earlier timings first, then the new ones."""
    previous = _previous(tmp_path, [("numpy_vjp", 8)], [])
    new = {
        "benchmarks": [{"extra_info": _entry("numpy_vjp", 16)}],
        "softgrad": {"skipped": [], "failed": []},
    }

    merged = resume.merge(new, previous, [_key("numpy_vjp", 8), _key("numpy_vjp", 16)])

    assert merged["benchmarks"] == previous.data["benchmarks"] + new["benchmarks"]
    assert merged["softgrad"]["resumed_from"] == [str(previous.path)]


def test_merge_skips_of_planned_cases_replaced(tmp_path):
    """A skip of a case the new run planned again is dropped; others carry over."""
    previous = _previous(
        tmp_path, [], [("looped_jacobian", 8), ("looped_jacobian", 4096)], ["a.json"]
    )
    new = {
        "benchmarks": [{"extra_info": _entry("looped_jacobian", 8)}],
        "softgrad": {"skipped": [], "failed": []},
    }

    merged = resume.merge(new, previous, [_key("looped_jacobian", 8)])

    kept = [(e["backend"], e["n"]) for e in merged["softgrad"]["skipped"]]
    assert kept == [("looped_jacobian", 4096)]
    assert merged["softgrad"]["resumed_from"] == ["a.json", str(previous.path)]


def test_cases_in_counts_every_outcome():
    """cases_in lists timed, skipped and failed cases alike."""
    data = {
        "benchmarks": [{"extra_info": _entry("numpy_vjp", 8)}],
        "softgrad": {
            "skipped": [_entry("looped_jacobian", 8, reason="slow")],
            "failed": [_entry("numba_serial", 8, reason="off")],
        },
    }

    assert resume.cases_in(data) == {
        _key("numpy_vjp", 8),
        _key("looped_jacobian", 8),
        _key("numba_serial", 8),
    }


def test_read_previous_lists_timed_cases():
    """An earlier results file gives the case of each of its timings."""
    previous = resume.read_previous(DATA / "small_run.json")

    data = json.loads((DATA / "small_run.json").read_text())
    assert len(previous.timed) == len(data["benchmarks"])
    assert ("softmax_backward", "numpy_vjp", 3, 3, "float64", "default") in previous.timed


def test_check_same_machine_rejects_other_cores(tmp_path):
    """A file measured with another core count cannot be resumed here."""
    previous = _previous(tmp_path, [], [])
    previous.data["softgrad"]["machine"] = {"cpu": "X", "logical_cores": 64}

    with pytest.raises(SoftgradError, match="logical_cores 64, this machine has 2"):
        resume.check_same_machine(previous, {"cpu": "X", "logical_cores": 2})
