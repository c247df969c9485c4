"""asv history on a fresh clone: run, a commit range, continuous and publish.

The test copies the project's tracked files into a new git repository with two
commits, the second making numpy_vjp sleep 20 ms per call, and drives asv on
it. asv builds one virtualenv environment from the package index (numpy,
numba, psutil), which takes about a minute, so the test is marked slow.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# One parameter combination of one benchmark, so each run takes seconds.
BENCHMARK = r"SoftmaxBackward\.time_gradient\('numpy_vjp', '3x3', 'float64'\)"
MACHINE = "softgrad-test"
# Fewer rounds and samples than the suite's own, enough to see a 1000x change.
FAST = ["-a", "rounds=1", "-a", "repeat=3"]
SLEEP = "    import time\n\n    time.sleep(0.02)  # a deliberate regression\n"

pytestmark = pytest.mark.slow


def git(folder: Path, *arguments: str) -> str:
    completed = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
        + list(arguments),
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    )
    names = [name for name in listed.stdout.decode().split("\0") if name]
    return [name for name in names if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A two-commit repository of the project, asv's machine file and environment."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    pytest.importorskip("asv", reason="asv is not installed: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("asv")
    repo = root / "repo"
    for name in tracked_files():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")

    vjp = repo / "impls" / "vjp.py"
    header = "def numpy_vjp(probs, dvalues, *, out=None):\n"
    text = vjp.read_text()
    assert header in text, "numpy_vjp's signature changed; update this test"
    vjp.write_text(text.replace(header, header + SLEEP, 1))
    git(repo, "commit", "-q", "-a", "-m", "slow numpy_vjp down")

    # asv keeps its machine file in the home folder: a temporary one leaves the
    # user's alone. pip's own configuration stays where it was.
    home = root / "home"
    home.mkdir()
    environment = dict(os.environ, HOME=str(home))
    environment.setdefault("XDG_CONFIG_HOME", str(Path.home() / ".config"))
    return repo, environment


def asv(history, *arguments: str, timeout: int = 240) -> subprocess.CompletedProcess:
    repo, environment = history
    return subprocess.run(
        [sys.executable, "-m", "asv", *arguments],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def result_files(repo: Path) -> dict[str, Path]:
    """Map commit hash prefixes to asv's result files of the test machine."""
    folder = repo / "results" / "asv" / MACHINE
    files = [path for path in folder.glob("*.json") if path.name != "machine.json"]
    return {path.name.split("-")[0]: path for path in files}


def measured(path: Path) -> float:
    """Return the one measured time of the benchmark in an asv result file."""
    data = json.loads(path.read_text())
    values = data["results"]["gradients.SoftmaxBackward.time_gradient"][0]
    times = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    assert len(times) == 1, f"expected one timed parameter set in {path.name}"
    return times[0]


@pytest.fixture(scope="module")
def machine(history):
    completed = asv(history, "machine", "--yes", "--machine", MACHINE)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return MACHINE


@pytest.fixture(scope="module")
def first_run(history, machine):
    """`asv run` of the first commit, which builds the environment."""
    return asv(history, "run", "--machine", machine, *FAST, "-b", BENCHMARK, "HEAD~1^!")


def test_run_saves_results(history, first_run):
    """`asv run` on a fresh clone saves a result for the first commit."""
    repo, _ = history
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    first = git(repo, "rev-parse", "HEAD~1")[:8]
    assert first in result_files(repo)
    assert measured(result_files(repo)[first]) < 0.02


def test_run_commit_range(history, first_run, machine):
    """`asv run HEAD~1..HEAD` times the second commit, which sleeps 20 ms a call."""
    repo, _ = history
    completed = asv(
        history, "run", "--machine", machine, *FAST, "-b", BENCHMARK, "HEAD~1..HEAD"
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    second = git(repo, "rev-parse", "HEAD")[:8]
    assert second in result_files(repo)
    assert measured(result_files(repo)[second]) >= 0.02


def test_continuous_flags_regression(history, first_run, machine):
    """`asv continuous` between the commits exits 1 and names the benchmark."""
    completed = asv(
        history,
        "continuous",
        "--machine",
        machine,
        *FAST,
        "-b",
        BENCHMARK,
        "--factor",
        "2",
        "HEAD~1",
        "HEAD",
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "PERFORMANCE DECREASED" in completed.stdout
    assert "time_gradient('numpy_vjp', '3x3', 'float64')" in completed.stdout


def test_publish_writes_html(history, first_run):
    """`asv publish` writes results/html with the benchmark's graph data."""
    repo, _ = history
    completed = asv(history, "publish")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    html = repo / "results" / "html"
    assert (html / "index.html").is_file()
    assert (html / "index.json").is_file()
    graphs = list((html / "graphs").rglob("*.json"))
    assert any("time_gradient" in path.name for path in graphs)
