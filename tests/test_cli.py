"""Tests of the `softgrad` command: listing, option errors and an end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import impls
from softgrad import cli


def run_softgrad(*arguments, cwd=None):
    environment = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "softgrad", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=600,
    )


def test_list_names_every_backend(capsys):
    """`softgrad list` shows each backend with its family."""
    assert cli.main(["list"]) == 0
    output = capsys.readouterr().out
    for backend in impls.backends():
        assert backend.name in output
        assert backend.family in output


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--backends", "no_such_backend"], "unknown backend `no_such_backend`"),
        (["--families", "softmax"], "unknown family `softmax`"),
        (["--sizes", "64by10"], "invalid size '64by10'"),
        (["--sizes", "0x10"], "N and L must both be at least 1"),
        (["--dtypes", "float16"], "unsupported dtype `float16`"),
        (["--time-budget", "-1"], "`--time-budget` must be a positive number"),
        (["--threads", "0"], "`--threads` must be from 1 to"),
    ],
)
def test_run_rejects_bad_option(tmp_path, capsys, arguments, expected):
    """A bad option gets a one-line error, exit status 2 and no files."""
    results = tmp_path / "results"
    status = cli.main(["run", "--results", str(results), *arguments])
    error = capsys.readouterr().err
    assert status == 2
    assert expected in error
    assert error.count("\n") == 1
    assert not results.exists()


def test_run_rejects_unwritable_results(tmp_path, capsys):
    """A results path under a regular file is reported, naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    status = cli.main(["run", "--quick", "--results", str(blocker / "results")])
    error = capsys.readouterr().err
    assert status == 2
    assert "cannot write results to" in error
    assert str(blocker / "results") in error


def test_report_rejects_missing_file(tmp_path, capsys):
    """`softgrad report` names a results file that does not exist."""
    status = cli.main(["report", str(tmp_path / "absent.json")])
    assert status == 2
    assert "absent.json` not found" in capsys.readouterr().err


def test_run_then_report_end_to_end(tmp_path):
    """A tiny run writes raw JSON, summary and report, and `report` rebuilds them."""
    results = tmp_path / "results"
    done = run_softgrad(
        "run", "--quick", "--sizes", "3x3,16x10", "--results", str(results)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    raw_files = list((results / "raw").glob("run-*.json"))
    assert len(raw_files) == 1
    data = json.loads(raw_files[0].read_text())
    timed = {
        (b["extra_info"]["family"], b["extra_info"]["backend"])
        for b in data["benchmarks"]
    }
    assert timed == {(b.family, b.name) for b in impls.backends() if b.available}
    assert data["softgrad"]["machine"]["cpu"]
    assert "numba_serial" in done.stdout
    for name in ("summary.csv", "summary.md", "report.html"):
        assert (results / name).stat().st_size > 0
    assert not list(results.rglob("*.tmp")) and not list(results.rglob("*.partial"))

    (results / "report.html").unlink()
    rebuilt = run_softgrad("report", str(raw_files[0]), "--results", str(results))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (results / "report.html").stat().st_size > 0
