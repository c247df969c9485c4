"""Tests of the `softgrad` command: listing, bad input, results files, end-to-end
runs, interrupted and concurrent runs, and the memory and time guards of a run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import impls
import softgrad
from softgrad import cli

DATA = Path(__file__).parent / "data"

# Python ignores SIGINT when it starts with SIGINT ignored, as a background job
# of a shell without job control does. The interruption tests send SIGINT, so
# they start softgrad with Python's own SIGINT handler installed again.
SOFTGRAD_WITH_SIGINT = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'softgrad'; "
    "runpy.run_module('softgrad', run_name='__main__')"
)


def _environment():
    # Without the OpenBLAS variables softgrad does not start itself again.
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in cli.OPENBLAS_VARIABLES
    }
    return {**environment, "NUMBA_NUM_THREADS": "2"}


def run_softgrad(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "softgrad", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(),
        timeout=600,
        check=False,
    )


def start_softgrad(*arguments):
    """Start softgrad in the background, with SIGINT raising KeyboardInterrupt."""
    return subprocess.Popen(
        [sys.executable, "-c", SOFTGRAD_WITH_SIGINT, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
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
        (["--sizes", "64x"], "invalid size '64x'"),
        (["--sizes", "64x10x3"], "invalid size '64x10x3'"),
        (["--sizes", "1.5x10"], "invalid size '1.5x10'"),
        (["--sizes", "64x10,,x3"], "invalid size 'x3'"),
        (["--families", "softmax_backward,nope"], "unknown family `nope`"),
        (["--min-rounds", "0"], "`--min-rounds` must be at least 1, got 0"),
        (["--memory-limit-gib", "0"], "`--memory-limit-gib` must be a positive"),
        # (64 x 128256 x 128256 + 4 x 64 x 128256) float64 values: 7.7 TiB,
        # past the default limit of a quarter of physical memory.
        (
            ["--sizes", "64x128256", "--backends", "einsum_jacobian"],
            (
                "every selected case would be skipped, so nothing would be timed: "
                "einsum_jacobian at 64x128256 float64: needs 7.7 TiB"
            ),
        ),
        (["--dtypes", "float8"], "unsupported dtype `float8`"),
        (
            ["--dtypes", "float16", "--backends", "numpy_vjp"],
            (
                "every selected case would be skipped, so nothing would be timed: "
                "numpy_vjp at 3x3 float16: float16 is not supported by numpy_vjp"
            ),
        ),
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


def test_run_rejects_results_file(tmp_path, capsys):
    """A --results path that is a regular file is reported and left as it was."""
    blocker = tmp_path / "results"
    blocker.write_text("notes")

    status = cli.main(["run", "--quick", "--results", str(blocker)])

    error = capsys.readouterr().err
    assert status == 2
    assert f"cannot write results to `{blocker}`" in error
    assert error.count("\n") == 1
    assert blocker.read_text() == "notes"


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _small_run_text() -> str:
    return (DATA / "small_run.json").read_text()


def _other_schema() -> str:
    data = json.loads(_small_run_text())
    data["softgrad"]["schema_version"] = 99
    return json.dumps(data)


def _without_section() -> str:
    data = json.loads(_small_run_text())
    del data["softgrad"]
    return json.dumps(data)


BAD_RESULTS = [
    ("truncated", lambda: _small_run_text()[:5000], "is not valid JSON"),
    ("empty", lambda: "", "is not valid JSON"),
    ("binary", lambda: bytes(range(256)), "is not valid JSON: it is not UTF-8"),
    ("list", lambda: "[1, 2]", "is not pytest-benchmark JSON"),
    ("foreign", lambda: '{"name": "other"}', "is not pytest-benchmark JSON"),
    ("no_section", _without_section, "has no `softgrad` section"),
    ("schema", _other_schema, "has `schema_version` 99, expected 1"),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(content, expected, id=name)
        for name, content, expected in BAD_RESULTS
    ],
)
def test_report_rejects_bad_results_file(tmp_path, capsys, content, expected):
    """`softgrad report` names a bad file and what is wrong, and writes nothing."""
    bad = _write(tmp_path / "bad.json", content())
    results = tmp_path / "results"

    status = cli.main(
        ["report", str(DATA / "hand.json"), str(bad), "--results", str(results)]
    )

    error = capsys.readouterr().err
    assert status == 2
    assert f"`{bad}`" in error
    assert expected in error
    assert error.count("\n") == 1
    assert not results.exists()


def _case_keys(path: Path) -> set[tuple]:
    data = json.loads(path.read_text())
    keys = {
        tuple(
            b["extra_info"][k] for k in ("family", "backend", "n", "classes", "dtype")
        )
        for b in data["benchmarks"]
    }
    return keys


def test_report_merges_files(tmp_path):
    """`softgrad report A B` writes one summary with the timed cases of both."""
    whole = json.loads(_small_run_text())
    half = len(whole["benchmarks"]) // 2
    first = {**whole, "benchmarks": whole["benchmarks"][:half]}
    second = {**whole, "benchmarks": whole["benchmarks"][half:]}
    files = [
        _write(tmp_path / "first.json", json.dumps(first)),
        _write(tmp_path / "second.json", json.dumps(second)),
    ]
    results = tmp_path / "results"

    done = run_softgrad("report", *map(str, files), "--results", str(results))

    assert done.returncode == 0, done.stdout + done.stderr
    rows = (results / "summary.csv").read_text().splitlines()[1:]
    summarized = {
        (family, backend, int(n), int(classes), dtype)
        for family, n, classes, dtype, backend, *_ in (r.split(",") for r in rows)
    }
    assert _case_keys(files[0]).isdisjoint(_case_keys(files[1]))
    assert summarized == _case_keys(files[0]) | _case_keys(files[1])
    assert len(rows) == len(whole["benchmarks"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda: "{", "cannot resume: results file"),
        (_without_section, "has no `softgrad` section"),
    ],
    ids=["truncated", "foreign"],
)
def test_resume_rejects_bad_file(tmp_path, capsys, content, expected):
    """--resume with a bad results file is a one-line error, before anything runs."""
    bad = _write(tmp_path / "bad.json", content())
    results = tmp_path / "results"

    status = cli.main(
        ["run", "--quick", "--resume", str(bad), "--results", str(results)]
    )

    error = capsys.readouterr().err
    assert status == 2
    assert f"`{bad}`" in error
    assert expected in error
    assert error.count("\n") == 1
    assert not results.exists()


def test_resume_rejects_other_machine(tmp_path, capsys):
    """--resume with a file measured on another CPU is rejected."""
    data = json.loads(_small_run_text())
    data["softgrad"]["machine"] = {
        "cpu": "a CPU of another machine",
        "logical_cores": 1,
    }
    earlier = _write(tmp_path / "earlier.json", json.dumps(data))
    results = tmp_path / "results"

    status = cli.main(
        ["run", "--quick", "--resume", str(earlier), "--results", str(results)]
    )

    error = capsys.readouterr().err
    assert status == 2
    assert "'a CPU of another machine'" in error
    assert "start a new run without --resume" in error
    assert not results.exists()


def test_resume_with_nothing_left(tmp_path, capsys):
    """--resume from a file that timed every selected case runs nothing."""
    data = json.loads(_small_run_text())
    data["softgrad"].pop("machine", None)
    earlier = _write(tmp_path / "earlier.json", json.dumps(data))
    results = tmp_path / "results"
    arguments = ["--sizes", "3x3", "--backends", "numpy_vjp", "--resume", str(earlier)]

    status = cli.main(["run", *arguments, "--results", str(results)])

    assert status == 0
    assert (
        f"every selected case is already timed in {earlier}" in capsys.readouterr().out
    )
    assert not results.exists()


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
    section = data["softgrad"]
    assert section["machine"]["cpu"]
    assert section["schema_version"] == 1
    assert section["softgrad_version"] == softgrad.__version__
    assert section["machine"]["numpy"] == np.__version__
    assert section["machine"]["python"] == platform.python_version()
    assert section["command"] == shlex.join(
        [
            "softgrad",
            "run",
            "--quick",
            "--sizes",
            "3x3,16x10",
            "--results",
            str(results),
        ]
    )
    assert section["interrupted"] is False
    assert "numba_serial" in done.stdout
    assert not list((results / "raw").glob(".*.partial"))
    for name in ("summary.csv", "summary.md", "report.html"):
        assert (results / name).stat().st_size > 0
    assert not list(results.rglob("*.tmp")) and not list(results.rglob("*.partial"))

    (results / "report.html").unlink()
    rebuilt = run_softgrad("report", str(raw_files[0]), "--results", str(results))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (results / "report.html").stat().st_size > 0


class FakeItem:
    """The part of a pytest item that ProgressPlugin.weight reads."""

    def __init__(self, case):
        self.callspec = type("CallSpec", (), {"params": {"case": case}})()


def test_progress_weight_of_skipped_case():
    """A case over the memory limit counts as a sliver of work, a timed one as 1."""
    from rich.console import Console

    from softgrad.cases import Case
    from softgrad.grid import Size

    case = Case("softmax_backward", "numpy_vjp", Size(4, 5), "float64")
    tiny = cli.ProgressPlugin(Console(quiet=True), memory_limit=1)
    ample = cli.ProgressPlugin(Console(quiet=True), memory_limit=2**30)
    assert tiny.weight(FakeItem(case)) == cli.SKIPPED_WEIGHT
    assert ample.weight(FakeItem(case)) == 1.0


def test_run_quiet_prints_nothing(tmp_path):
    """`softgrad run --quiet` writes its files but prints nothing on success."""
    completed = run_softgrad(
        "run",
        "--quiet",
        "--quick",
        "--sizes",
        "4x5",
        "--backends",
        "numpy_vjp",
        "--results",
        str(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr == ""
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "scaling.csv").is_file()
    assert (tmp_path / "tidy.csv").is_file()


# --- interrupted and concurrent runs ---------------------------------------------

SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
# Eight cases of about half a second each: long enough to interrupt halfway.
SWEEP = (
    "run",
    "--families=softmax_backward",
    "--backends=numpy_vjp",
    "--dtypes=float64",
    "--sizes=" + ",".join(f"{n}x10" for n in SIZES),
    "--max-time=0.3",
)
PLANNED = {f"numpy_vjp-{n}x10-float64" for n in SIZES}


def _passed_cases(log: Path) -> list[str]:
    """Return the ids of the cases that pytest's log reports as passed, in order."""
    return re.findall(r"\[([^\]]+)\] PASSED", log.read_text())


def _timed_cases(raw: Path) -> list[str]:
    """Return the ids of the cases that a raw results file contains timings of."""
    data = json.loads(raw.read_text())
    return [
        "{backend}-{n}x{classes}-{dtype}".format(**b["extra_info"])
        for b in data["benchmarks"]
    ]


def _wait_for_passed(process, raw_folder: Path, count: int) -> None:
    """Wait until the run's log reports `count` cases passed."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        logs = list(raw_folder.glob("run-*.log"))
        if logs and len(_passed_cases(logs[0])) >= count:
            return
        if process.poll() is not None:
            output, errors = process.communicate()
            pytest.fail(f"softgrad ended before {count} cases:\n{output}{errors}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"softgrad timed fewer than {count} cases in 300 s")


def test_interrupted_run_resumes(tmp_path):
    """Ctrl-C keeps every finished case; --resume times the others, none twice."""
    results = tmp_path / "results"
    first = start_softgrad(*SWEEP, "--results", str(results))
    _wait_for_passed(first, results / "raw", 3)
    first.send_signal(signal.SIGINT)
    output, errors = first.communicate(timeout=300)

    assert first.returncode == 130, output + errors
    (raw,) = (results / "raw").glob("run-*.json")
    saved = _timed_cases(raw)
    assert saved == _passed_cases(raw.with_suffix(".log"))
    assert 3 <= len(saved) < len(PLANNED)
    assert json.loads(raw.read_text())["softgrad"]["interrupted"] is True
    assert not list((results / "raw").glob(".*.partial"))
    found = re.search(r"^to finish the run: (.+)$", output, re.MULTILINE)
    assert found is not None, output
    command = shlex.split(found.group(1))
    assert command[-2:] == ["--resume", str(raw)]

    second = run_softgrad(*command[1:])

    assert second.returncode == 0, second.stdout + second.stderr
    (resumed,) = set((results / "raw").glob("run-*.json")) - {raw}
    timed_again = _passed_cases(resumed.with_suffix(".log"))
    assert set(timed_again).isdisjoint(saved)
    assert len(saved) + len(timed_again) == len(PLANNED)
    assert sorted(_timed_cases(resumed)) == sorted(PLANNED)
    earlier = json.loads(raw.read_text())["benchmarks"]
    merged = json.loads(resumed.read_text())["benchmarks"]
    assert merged[: len(earlier)] == earlier


def test_sigterm_keeps_finished_cases(tmp_path):
    """SIGTERM stops a run like Ctrl-C: finished cases saved, exit status 143."""
    results = tmp_path / "results"
    run = start_softgrad(*SWEEP, "--results", str(results))
    _wait_for_passed(run, results / "raw", 1)
    run.send_signal(signal.SIGTERM)
    output, errors = run.communicate(timeout=300)

    assert run.returncode == 128 + signal.SIGTERM, output + errors
    (raw,) = (results / "raw").glob("run-*.json")
    saved = _timed_cases(raw)
    assert saved == _passed_cases(raw.with_suffix(".log"))
    assert 1 <= len(saved) < len(PLANNED)
    assert "to finish the run: softgrad run" in output
    assert not list((results / "raw").glob(".*.partial"))


def test_concurrent_runs_both_kept(tmp_path):
    """Two runs started together into one folder keep both files and one summary."""
    results = tmp_path / "results"
    selections = (
        ("softmax_backward", "numpy_vjp"),
        ("cce_softmax_backward", "fused_numpy"),
    )
    runs = [
        start_softgrad(
            "run",
            f"--families={family}",
            f"--backends={backend}",
            "--dtypes=float64",
            "--sizes=8x10,64x10",
            "--results",
            str(results),
        )
        for family, backend in selections
    ]
    outputs = [run.communicate(timeout=300) for run in runs]

    for run, (output, errors) in zip(runs, outputs):
        assert run.returncode == 0, output + errors
    raws = sorted((results / "raw").glob("run-*.json"))
    assert len(raws) == 2
    assert {frozenset(_timed_cases(raw)) for raw in raws} == {
        frozenset({f"{backend}-8x10-float64", f"{backend}-64x10-float64"})
        for _, backend in selections
    }
    assert len(list((results / "raw").glob("run-*.log"))) == 2
    rows = (results / "summary.csv").read_text().splitlines()[1:]
    summarized = {tuple(row.split(",")[:5]) for row in rows}
    assert summarized == {
        (family, str(n), "10", "float64", backend)
        for family, backend in selections
        for n in (8, 64)
    }
    assert not list(results.rglob("*.tmp"))


# --- the memory and time guards in a run -----------------------------------------

# Runs softgrad under tracemalloc, which counts numpy's allocations too, with
# the heavy modules imported before tracing starts.
TRACED_RUN = """
import json, sys, tracemalloc
import matplotlib.pyplot, numba, pandas, pytest, pytest_benchmark.plugin
import impls.jacobian
from softgrad import cli, report, summary
tracemalloc.start()
status = cli.main(sys.argv[1:])
print(json.dumps({"status": status, "peak": tracemalloc.get_traced_memory()[1]}))
"""

MIB = 2**20


def test_guards_bound_memory_and_time(tmp_path):
    """A run's traced peak stays under the memory limit; slow cases are skipped."""
    results = tmp_path / "results"
    arguments = [
        "run",
        "--families=softmax_backward",
        "--backends=einsum_jacobian,looped_jacobian",
        "--sizes=4x1024,64x1024,512x2000",
        "--dtypes=float64",
        "--memory-limit-gib=0.25",
        "--time-budget=0.1",
        "--max-time=0.02",
        "--results",
        str(results),
    ]
    done = subprocess.run(
        [sys.executable, "-c", TRACED_RUN, *arguments],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=600,
        check=False,
    )
    measured = json.loads(done.stdout.splitlines()[-1])

    assert measured["status"] == 0, done.stdout + done.stderr
    # The (4, 1024, 1024) float64 Jacobians of einsum_jacobian at 4 x 1024 ran.
    assert measured["peak"] >= 4 * 1024 * 1024 * 8
    assert measured["peak"] < 256 * MIB
    (raw,) = (results / "raw").glob("run-*.json")
    data = json.loads(raw.read_text())
    assert "einsum_jacobian-4x1024-float64" in _timed_cases(raw)
    reasons = {
        (entry["backend"], entry["n"]): entry["reason"]
        for entry in data["softgrad"]["skipped"]
    }
    # Two inputs, the (64, 1024, 1024) Jacobians, the product and the output.
    need = (2 * 64 * 1024 + 64 * 1024 * 1024 + 2 * 64 * 1024) * 8 / MIB
    assert reasons[("einsum_jacobian", 64)] == f"needs {need:.1f} MiB, limit 256.0 MiB"
    found = re.fullmatch(
        r"predicted (\d+\.\d+) s per call, time budget 0.1 s",
        reasons[("looped_jacobian", 512)],
    )
    assert found is not None, reasons
    started = datetime.datetime.fromisoformat(data["softgrad"]["started"])
    finished = datetime.datetime.fromisoformat(data["datetime"])
    # The sweep ended sooner than one call of the looped Jacobian would have.
    assert (finished - started).total_seconds() < float(found.group(1))


def test_run_variants_writes_a_row_each(tmp_path):
    """`--variants` times each variant as its own case; default ids stay as they were."""
    completed = run_softgrad(
        "run",
        "--quiet",
        "--quick",
        "--variants",
        "default,peaked,label_smoothing=0.1",
        "--sizes",
        "16x10",
        "--families",
        "cce_softmax_backward",
        "--backends",
        "fused_numpy,composed_vjp",
        "--dtypes",
        "float64",
        "--results",
        str(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr
    (raw,) = (tmp_path / "raw").glob("*.json")
    ids = {
        b["name"].split("[")[1].rstrip("]")
        for b in json.loads(raw.read_text())["benchmarks"]
    }
    assert ids == {
        f"{backend}-16x10-float64{suffix}"
        for backend in ("fused_numpy", "composed_vjp")
        for suffix in ("", "-peaked", "-label_smoothing=0.1")
    }
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert summary[0].split(",")[4] == "variant"
    assert len(summary) == 1 + 6
