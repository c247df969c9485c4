"""The `softgrad` command: run the sweep, rebuild reports, list the backends."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

log = logging.getLogger(__name__)

# OpenBLAS reads these when it loads; on some machines they are set to values
# that slow numpy down, so `softgrad run` starts itself again without them.
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REEXEC_MARK = "SOFTGRAD_OPENBLAS_ENV_CLEARED"

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARK_DIR = REPOSITORY / "tests" / "benchmarks"


class CommandError(Exception):
    """An error the command reports in one line before exiting with status 2."""


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softgrad",
        # Exact option names, so that the command stored with results reruns as is.
        allow_abbrev=False,
        description="Measure every practical way to compute the softmax gradient "
        "and the fused softmax + cross-entropy gradient.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debugging details"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print no progress and no tables, only errors (for scripts)",
    )
    # The same two options after the command name; SUPPRESS keeps an option
    # given before the command name when it is not repeated after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log debugging details",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print no progress and no tables, only errors (for scripts)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        parents=[common],
        help="check every backend, time the grid, write the summary and report",
        allow_abbrev=False,
    )
    run.add_argument("--families", help="comma-separated families (default: all)")
    run.add_argument(
        "--backends", help="comma-separated backend names (default: all)"
    )
    run.add_argument(
        "--sizes",
        help="comma-separated NxL sizes, for example 64x10,256x1000 (replace the grid)",
    )
    run.add_argument(
        "--dtypes", help="comma-separated dtypes (default: float64,float32)"
    )
    run.add_argument(
        "--variants",
        help="comma-separated case variants, or `all`: default, peaked and large "
        "(input distributions), label_smoothing=0.1, weight, ignore_index and "
        "reduction=sum (cross-entropy options, CCE families only) "
        "(default: default)",
    )
    run.add_argument(
        "--grid",
        default="default",
        choices=("default", "quick", "large"),
        help="size grid (default: %(default)s)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="use the quick grid and fewer rounds: a run of seconds, to try things out",
    )
    run.add_argument(
        "--results",
        default="results",
        type=Path,
        help="folder for raw JSON, summary and report (default: %(default)s)",
    )
    run.add_argument(
        "--memory-limit-gib",
        type=float,
        help="skip cases whose estimated memory exceeds this many GiB "
        "(default: a quarter of physical memory)",
    )
    run.add_argument(
        "--time-budget",
        type=float,
        help="skip cases predicted to take longer than this many seconds per call "
        "(default: 3, or 0.25 with --quick)",
    )
    run.add_argument(
        "--max-time",
        type=float,
        default=0.1,
        help="seconds pytest-benchmark spends timing each case (default: %(default)s)",
    )
    run.add_argument(
        "--min-rounds",
        type=int,
        default=5,
        help="minimum timed rounds per case (default: %(default)s)",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RAW_JSON",
        help="finish an interrupted run: time only the cases this raw results file "
        "has not timed, and write them together with its timings",
    )
    run.add_argument(
        "--threads",
        type=int,
        help="threads for every backend: BLAS, numba, PyTorch and XLA "
        "(default: all cores numba sees)",
    )
    run.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help=f"keep {' and '.join(OPENBLAS_VARIABLES)} instead of clearing them",
    )

    report = commands.add_parser(
        "report",
        parents=[common],
        help="rebuild summary and report from saved results, timing nothing",
        allow_abbrev=False,
    )
    report.add_argument("files", nargs="+", type=Path, help="raw results JSON files")
    report.add_argument(
        "--results",
        default="results",
        type=Path,
        help="folder for summary and report (default: %(default)s)",
    )

    compare = commands.add_parser(
        "compare",
        parents=[common],
        help="compare two saved runs case by case, with the noise of each ratio",
    )
    compare.add_argument("old", type=Path, help="raw results JSON of the older run")
    compare.add_argument("new", type=Path, help="raw results JSON of the newer run")
    compare.add_argument(
        "--fail-above",
        type=float,
        metavar="FACTOR",
        help="exit with status 1 when a case is flagged slower and NEW / OLD is "
        "above FACTOR, for example 1.5 (default: never)",
    )
    compare.add_argument(
        "--min-change",
        type=float,
        metavar="FACTOR",
        help="flag a case only when its 95%% interval lies beyond this factor "
        "either way (default: softgrad.compare.DEFAULT_MIN_CHANGE, 1.1)",
    )
    compare.add_argument(
        "--min-time",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="leave cases whose OLD median is below SECONDS out of --fail-above; "
        "the table still shows them (default: %(default)s)",
    )
    compare.add_argument(
        "--relative",
        action="store_true",
        help="divide every ratio by the geometric mean of all ratios, to take out "
        "a slowdown of the whole machine between the runs",
    )
    compare.add_argument(
        "--output", type=Path, help="also write the comparison to this CSV file"
    )

    export = commands.add_parser(
        "export",
        parents=[common],
        help="write every run's statistics as one tidy table, CSV or Parquet",
    )
    export.add_argument("files", nargs="+", type=Path, help="raw results JSON files")
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="the table to write: a .csv or .parquet file (Parquet needs pyarrow)",
    )
    export.add_argument(
        "--format",
        choices=("csv", "parquet"),
        help="the file format (default: from the --output suffix)",
    )

    publish = commands.add_parser(
        "publish",
        parents=[common],
        help="run `asv publish` and make the page load its scripts locally, "
        "so it works offline",
    )
    publish.add_argument(
        "--config",
        type=Path,
        default=Path("asv.conf.json"),
        help="asv's configuration, whose html_dir is rewritten (default: %(default)s)",
    )
    publish.add_argument(
        "--assets",
        type=Path,
        help="folder of the npm tarballs the page's scripts come from; filled with "
        "`npm pack` when empty (default: ~/.cache/softgrad/asv-assets)",
    )

    commands.add_parser(
        "list", parents=[common], help="list every backend and whether it runs here"
    )
    _add_train_parser(commands)
    return parser


def _add_train_parser(commands) -> None:
    from softgrad.grid import SEED
    from softgrad.train import DEFAULT_EPOCHS, DTYPES

    train = commands.add_parser(
        "train",
        help="train a small network on scikit-learn's digits once per backend: "
        "time per epoch, share of the softmax gradient, same loss curve",
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="epochs of SGD per backend (default: %(default)s)",
    )
    train.add_argument("--families", help="comma-separated families (default: all)")
    train.add_argument(
        "--backends", help="comma-separated backend names (default: all)"
    )
    train.add_argument(
        "--dtype",
        default="float64",
        choices=DTYPES,
        help="dtype of the network and its inputs (default: %(default)s)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help="seed of the split, the initial weights and the batch order "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--results",
        default="results",
        type=Path,
        help="folder for train.json and train.csv (default: %(default)s)",
    )


def _reexec_without_openblas_env() -> None:
    """Start this command again without the OpenBLAS variables, if any is set."""
    present = [name for name in OPENBLAS_VARIABLES if name in os.environ]
    if not present or os.environ.get(REEXEC_MARK):
        return
    environment = {k: v for k, v in os.environ.items() if k not in present}
    environment[REEXEC_MARK] = ",".join(f"{n}={os.environ[n]}" for n in present)
    os.execve(sys.executable, [sys.executable, "-m", "softgrad", *sys.argv[1:]], environment)


def _writable_folder(folder: Path) -> Path:
    """Create `folder` if needed and check that files can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise CommandError(
            f"cannot write results to `{folder}`: {error.strerror or error}; "
            f"pass a writeable folder with --results"
        ) from None
    return folder


def write_json_atomically(data: dict, path: Path) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    from softgrad.summary import write_atomic

    write_atomic(path, json.dumps(data, indent=1))


# A case that a static check skips (backend unavailable, dtype unsupported,
# memory over the limit) ends in microseconds, while a timed one takes about
# --max-time and its calibration. Weighting skips this little keeps them from
# counting as work done in the estimate of the time left.
SKIPPED_WEIGHT = 0.01


class ProgressPlugin:
    """Shows a progress bar over the cases pytest runs, with the current case.

    The bar advances by each case's expected share of the work, so the time
    left, which rich extrapolates from the recent rate, is not fooled by a
    stretch of instant skips. The count next to it is of cases.
    """

    def __init__(self, console: Console, memory_limit: int | None = None):
        self.progress = Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[cases]} cases"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.memory_limit = memory_limit
        self.weights: dict[str, float] = {}
        self.task = None

    def weight(self, item) -> float:
        """Return SKIPPED_WEIGHT for a case a static check skips, else 1."""
        from softgrad import cases

        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec else None
        if not isinstance(case, cases.Case):
            return 1.0
        limit = self.memory_limit or cases.default_memory_limit()
        try:
            cases.check_static(case, limit)
        except cases.Skip:
            return SKIPPED_WEIGHT
        return 1.0

    def pytest_collection_finish(self, session):
        self.weights = {item.nodeid: self.weight(item) for item in session.items}
        self.progress.start()
        self.task = self.progress.add_task(
            "collecting",
            total=sum(self.weights.values()),
            done=0,
            cases=len(session.items),
        )

    def pytest_runtest_logstart(self, nodeid, location):
        if self.task is not None:
            case = nodeid.split("[", 1)[-1].rstrip("]")
            family = nodeid.split("::")[-1].split("[")[0].removeprefix("test_")
            if "NOTSET" in case:  # pytest's name for an empty parameter list
                case = "(no case selected)"
            self.progress.update(self.task, description=f"{family} {case}"[:40])

    def pytest_runtest_logfinish(self, nodeid, location):
        if self.task is not None:
            done = self.progress.tasks[0].fields["done"] + 1
            self.progress.update(
                self.task, advance=self.weights.get(nodeid, 1.0), done=done
            )

    def pytest_sessionfinish(self, session, exitstatus):
        from pytest import ExitCode

        if self.task is not None:
            done = exitstatus != ExitCode.INTERRUPTED
            description = "done" if done else "interrupted"
            self.progress.update(self.task, description=description)
        self.progress.stop()


def _time_budget(options) -> float:
    if options.time_budget is not None:
        return options.time_budget
    from softgrad.cases import DEFAULT_TIME_BUDGET_S

    return 0.25 if options.quick else DEFAULT_TIME_BUDGET_S


def _thread_count(options) -> int:
    from softgrad.threads import max_threads

    return options.threads if options.threads is not None else max_threads()


def _pytest_arguments(options, raw_path: Path) -> list[str]:
    grid = "quick" if options.quick else options.grid
    arguments = [
        str(BENCHMARK_DIR),
        f"--rootdir={REPOSITORY}",
        "-c",
        str(REPOSITORY / "pyproject.toml"),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",  # the tests' property-based testing, 2 s to import
        "-v",  # one line per case in the log, written as each case ends
        "--benchmark-only",
        f"--benchmark-json={raw_path}",
        f"--benchmark-max-time={0.02 if options.quick else options.max_time}",
        f"--benchmark-min-rounds={options.min_rounds}",
        f"--softgrad-threads={_thread_count(options)}",
        "--benchmark-disable-gc",
        f"--softgrad-grid={grid}",
        f"--softgrad-time-budget={_time_budget(options)}",
    ]
    for name in ("families", "backends", "sizes", "dtypes", "variants"):
        value = getattr(options, name)
        if value:
            arguments.append(f"--softgrad-{name}={value}")
    if options.memory_limit_gib is not None:
        arguments.append(f"--softgrad-memory-limit-gib={options.memory_limit_gib}")
    if options.resume is not None:
        arguments.append(f"--softgrad-resume={options.resume}")
    return arguments


def _validate_run_options(options) -> list:
    """Check every option before anything runs, so a typo costs no time.

    Returns the planned cases.
    """
    from softgrad import cases
    from softgrad.grid import parse_size
    from softgrad.timing import parse_variants

    try:
        sizes = [parse_size(text) for text in _split(options.sizes)]
        planned = cases.plan(
            grid="quick" if options.quick else options.grid,
            families=_split(options.families),
            backends=_split(options.backends),
            sizes=sizes,
            dtypes=_split(options.dtypes),
            variants=parse_variants(options.variants),
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    except cases.SoftgradError as error:
        raise CommandError(str(error)) from None
    if not planned:
        raise CommandError("the options select no case: check --families and --backends")
    for name, value in (
        ("--time-budget", options.time_budget),
        ("--max-time", options.max_time),
        ("--memory-limit-gib", options.memory_limit_gib),
    ):
        if value is not None and not value > 0:
            raise CommandError(f"`{name}` must be a positive number, got {value}")
    if options.min_rounds < 1:
        raise CommandError(f"`--min-rounds` must be at least 1, got {options.min_rounds}")
    from softgrad.threads import max_threads

    if options.threads is not None and not 1 <= options.threads <= max_threads():
        raise CommandError(
            f"`--threads` must be from 1 to {max_threads()}, the cores numba sees, "
            f"got {options.threads}"
        )
    return planned


def _memory_limit(options) -> int:
    from softgrad.cases import default_memory_limit

    if options.memory_limit_gib is None:
        return default_memory_limit()
    return int(options.memory_limit_gib * 2**30)


def _check_something_runs(cases: list, memory_limit: int) -> None:
    """Raise CommandError when a guard would skip every case before running it."""
    from softgrad.cases import Skip, check_static

    reasons = []
    for case in cases:
        try:
            check_static(case, memory_limit)
        except Skip as reason:
            reasons.append(f"{case.backend} at {case.size} {case.dtype}: {reason}")
        else:
            return
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    raise CommandError(
        f"every selected case would be skipped, so nothing would be timed: "
        f"{reasons[0]}{more}; raise --memory-limit-gib, choose smaller --sizes "
        f"or other --backends"
    )


class _Signals:
    """Turns SIGTERM into KeyboardInterrupt, as Ctrl-C is, and remembers the signal."""

    def __init__(self):
        self.received: int | None = None
        self.previous = None

    def _handle(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave SIGTERM as it is
            self.previous = None
        return self

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def exit_status(self) -> int:
        """Return the exit status of a command stopped by the signal: 128 + number."""
        return 128 + (self.received or signal.SIGINT)


class _SweepRecorder:
    """Keeps softgrad's pytest plugin, to read its cases after the session."""

    def __init__(self):
        self.sweep = None

    def pytest_sessionstart(self, session):
        self.sweep = session.config.pluginmanager.get_plugin("softgrad-sweep")


def _untimed_results(sweep) -> dict | None:
    """Return results JSON for a session that timed nothing, or None if it ran nothing.

    pytest-benchmark writes no file when no case was timed, but the skipped
    and failed cases are worth keeping.
    """
    from pytest_benchmark import __version__ as benchmark_version

    if sweep is None or not (sweep.skipped or sweep.failed):
        return None
    return {
        "machine_info": None,
        "commit_info": None,
        "benchmarks": [],
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": benchmark_version,
        "softgrad": sweep.section(),
    }


@dataclasses.dataclass(frozen=True)
class _RunFiles:
    """The files of one run, named after its start time and process id."""

    results: Path
    raw: Path
    partial: Path  # what pytest-benchmark writes, before softgrad adds to it
    log: Path

    @classmethod
    def create(cls, results: Path) -> _RunFiles:
        results = _writable_folder(results)
        raw_folder = _writable_folder(results / "raw")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        raw = raw_folder / f"run-{stamp}-{os.getpid()}.json"
        partial = raw_folder / f".{raw.name}.partial"
        return cls(results, raw, partial, raw.with_suffix(".log"))


def _previous_run(options, machine_info: dict):
    """Read the results file of --resume, if given, and check it suits this run."""
    from softgrad import resume
    from softgrad.cases import SoftgradError

    if options.resume is None:
        return None
    try:
        previous = resume.read_previous(options.resume)
        resume.check_same_machine(previous, machine_info)
    except SoftgradError as error:
        raise CommandError(str(error)) from None
    return previous


def _sweep(options, files: _RunFiles, console: Console) -> tuple[int, object, _Signals]:
    """Time the cases with pytest-benchmark; return its exit status and the sweep."""
    import pytest

    recorder = _SweepRecorder()
    plugins = [ProgressPlugin(console, _memory_limit(options)), recorder]
    # pytest's own output goes to the log, so the terminal shows only the progress.
    with (
        _Signals() as signals,
        open(files.log, "w", buffering=1) as log_file,
        contextlib.redirect_stdout(log_file),
        contextlib.redirect_stderr(log_file),
    ):
        arguments = _pytest_arguments(options, files.partial)
        exit_code = pytest.main(arguments, plugins=plugins)
    return int(exit_code), recorder.sweep, signals


def _sweep_results(files: _RunFiles, sweep) -> dict | None:
    """Return the results JSON of the sweep, or None when it ended before any case."""
    if not files.partial.exists():
        return _untimed_results(sweep)
    try:
        return json.loads(files.partial.read_text())
    except ValueError as error:
        raise CommandError(
            f"pytest-benchmark's results `{files.partial}` cannot be read "
            f"({error}); see {files.log}"
        ) from None


def command_run(options, console: Console) -> int:
    from pytest import ExitCode

    from softgrad import bandwidth, gpu_probe, machine, resume

    if not BENCHMARK_DIR.is_dir():
        raise CommandError(
            f"`softgrad run` needs the benchmark modules of a source checkout, "
            f"not found at {BENCHMARK_DIR}; install with `pip install -e .` "
            f"from a clone of the repository"
        )
    planned = _validate_run_options(options)
    from softgrad.threads import set_threads

    # Before the probe, so that it reports the thread counts the backends run with.
    set_threads(_thread_count(options))
    machine_info = machine.probe()
    # The GPU's fields sit beside the CPU's; without a device only `gpu_reason` does.
    machine_info.update(gpu_probe.probe())
    previous = _previous_run(options, machine_info)
    remaining = [c for c in planned if not previous or c.key not in previous.timed]
    if not remaining:
        message = f"every selected case is already timed in {options.resume}"
        console.print(message, soft_wrap=True)
        return 0
    _check_something_runs(remaining, _memory_limit(options))
    files = _RunFiles.create(options.results)

    if os.environ.get(REEXEC_MARK):
        machine_info["cleared_environment"] = os.environ[REEXEC_MARK]
    # The bandwidth every backend's GB/s is a share of, measured with the same threads.
    # Its three arrays stay within the memory limit, like every case.
    probe_bytes = max(
        bandwidth.CACHE_MULTIPLE * bandwidth.last_level_cache_bytes(),
        bandwidth.MIN_ARRAY_BYTES,
    )
    probe_bytes = min(probe_bytes, _memory_limit(options) // 4)
    machine_info["bandwidth"] = bandwidth.probe(array_bytes=probe_bytes)
    console.print(_machine_line(machine_info))
    if previous is not None:
        console.print(
            f"resuming {previous.path}: {len(previous.timed)} cases timed there, "
            f"{len(remaining)} left",
            soft_wrap=True,
        )

    exit_code, sweep, signals = _sweep(options, files, console)
    interrupted = exit_code == ExitCode.INTERRUPTED
    data = _sweep_results(files, sweep)
    if data is None and interrupted:
        console.print("[red]interrupted before any case ended; nothing saved[/red]")
        return signals.exit_status()
    if data is None:
        raise CommandError(
            f"pytest-benchmark wrote no results (pytest exit status {exit_code}); "
            f"see {files.log}"
        )
    data["softgrad"]["machine"] = machine_info
    data["softgrad"]["command"] = shlex.join(["softgrad", *options.argv])
    if previous is not None:
        data = resume.merge(data, previous, [case.key for case in planned])
    write_json_atomically(data, files.raw)
    files.partial.unlink(missing_ok=True)
    console.print(f"raw results: {files.raw}", soft_wrap=True)

    status = _publish_run(files.raw, files.results, console)
    if interrupted:
        _print_resume_hint(options, files.raw, data, planned, console)
        return signals.exit_status()
    if exit_code not in (ExitCode.OK, ExitCode.NO_TESTS_COLLECTED):
        console.print(
            f"[red]pytest exit status {exit_code}: some cases failed; "
            f"see {files.log}[/red]"
        )
        return 1
    if not data["benchmarks"]:
        console.print("[red]no case was timed[/red]")
        return 1
    return status


def _print_resume_hint(options, raw: Path, data: dict, planned, console) -> None:
    from softgrad import resume

    done = resume.cases_in(data) & {case.key for case in planned}
    # soft_wrap keeps the path and the command on one line each, to copy them.
    console.print(
        f"[red]interrupted: {len(done)} of {len(planned)} cases done and saved "
        f"in {raw}[/red]",
        soft_wrap=True,
    )
    command = resume.resume_command(options.argv, raw)
    console.print(f"to finish the run: {command}", soft_wrap=True, markup=False)


def _machine_line(info: dict) -> str:
    blas = info.get("blas") or "unknown BLAS"
    line = (
        f"{info.get('cpu', 'unknown CPU')}, {info.get('logical_cores', '?')} cores, "
        f"{blas}"
    )
    triad = (info.get("bandwidth") or {}).get("triad_gb_per_s")
    if triad:
        line += f", memory bandwidth {triad:.1f} GB/s (triad)"
    return line


def _load_table(paths: list[Path]):
    from softgrad import summary

    try:
        timings, not_timed, _ = summary.load_results(paths)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return summary.summarize(timings), not_timed


def _print_outcome(table, not_timed, console: Console) -> int:
    """Print the table and each failed case; return 1 if a case failed, else 0."""
    from softgrad import summary

    if "machine" in table.columns:
        for label in dict.fromkeys(table["machine"]):
            console.print(f"[bold]{escape(label)}[/bold]")
            summary.print_table(table[table["machine"] == label], console)
    else:
        summary.print_table(table, console)
    skipped = not_timed[not_timed["status"] == "skipped"]
    failed = not_timed[not_timed["status"] == "failed"]
    if len(skipped):
        console.print(f"{len(skipped)} cases skipped; the report lists each reason")
    for row in failed.itertuples():
        console.print(f"[red]failed: {row.family}/{row.backend}: {row.reason}[/red]")
    return 1 if len(failed) else 0


def _print_published(published, console: Console) -> None:
    csv_path, markdown_path = published.summary_paths
    # soft_wrap keeps each path on one line, to copy it.
    console.print(f"summary: {markdown_path}, {csv_path}", soft_wrap=True)
    folder = markdown_path.parent
    scaling = f"{folder / 'scaling.md'}, {folder / 'scaling.csv'}"
    console.print(f"scaling: {scaling}, {folder / 'crossovers.csv'}", soft_wrap=True)
    console.print(f"report: {published.report_path}", soft_wrap=True)


def _publish_run(raw_path: Path, results: Path, console: Console) -> int:
    """Print this run's table, then rebuild the folder's summary from every raw file."""
    from softgrad import publish

    status = _print_outcome(*_load_table([raw_path]), console)
    with publish.lock(results):
        sources, problems = publish.readable_files(publish.raw_files(raw_path.parent))
        for problem in problems:
            message = f"[yellow]left out of the summary: {escape(problem)}[/yellow]"
            console.print(message, soft_wrap=True)
        published = publish.publish(sources, results)
    if len(sources) > 1:
        console.print(
            f"the summary and report merge the {len(sources)} raw files in "
            f"{raw_path.parent}; where two timed the same case, the later one wins"
        )
    _print_published(published, console)
    return status


def _require_files(paths) -> None:
    """Raise CommandError naming the first results file that does not exist."""
    for path in paths:
        if not path.is_file():
            raise CommandError(f"results file `{path}` not found")


def command_report(options, console: Console) -> int:
    from softgrad import publish
    from softgrad.summary import ResultsFileError

    _require_files(options.files)
    _load_table(list(options.files))  # rejects a bad file before anything is written
    results = _writable_folder(options.results)
    with publish.lock(results):
        try:
            published = publish.publish(list(options.files), results)
        except ResultsFileError as error:
            raise CommandError(str(error)) from None
    status = _print_outcome(published.table, published.not_timed, console)
    _print_published(published, console)
    return status


def command_export(options, console: Console) -> int:
    from softgrad import export

    _require_files(options.files)
    try:
        export.format_of(options.output, options.format)
        table = export.tidy_table(options.files)
        path = export.write_tidy(table, options.output, options.format)
    except ValueError as error:
        raise CommandError(str(error)) from None
    console.print(f"{len(table)} rows from {len(options.files)} runs: {path}")
    return 0


def command_publish(options, console: Console) -> int:
    import subprocess

    from softgrad import asv_html

    try:
        config = json.loads(options.config.read_text())
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read asv configuration `{options.config}`: {error}")
    html_dir = options.config.parent / config.get("html_dir", "html")
    completed = subprocess.run(
        [sys.executable, "-m", "asv", "publish", "--config", str(options.config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CommandError(
            f"`asv publish` failed with exit status {completed.returncode}:"
            f" {(completed.stderr or completed.stdout).strip()[-800:]}"
        )
    try:
        tarballs = asv_html.fetch(options.assets or asv_html.default_cache())
        replaced = asv_html.localize(html_dir, tarballs)
    except asv_html.AssetError as error:
        raise CommandError(
            f"{html_dir} was published but still loads its scripts from CDNs: {error}"
        ) from None
    console.print(f"{html_dir}/index.html: {len(replaced)} scripts and styles local")
    console.print(
        f"view it with `python -m http.server --bind 127.0.0.1 --directory {html_dir}`"
        " and open http://127.0.0.1:8000"
    )
    return 0


def command_list(options, console: Console) -> int:
    import impls

    for family in impls.FAMILIES:
        arguments = ", ".join(impls.ARGUMENTS[family])
        table = Table(title=f"{family}({arguments})", title_justify="left")
        table.add_column("backend", no_wrap=True)
        table.add_column("available")  # wraps, because reasons can be long
        table.add_column("dtypes")
        table.add_column("description")
        for backend in impls.backends(family):
            available = "yes" if backend.available else f"no: {backend.reason}"
            table.add_row(
                backend.name, available, ", ".join(backend.dtypes), backend.description
            )
        console.print(table)
    return 0


def command_train(options, console: Console) -> int:
    from softgrad import train

    try:
        config = train.TrainConfig(
            epochs=options.epochs, seed=options.seed, dtype=options.dtype
        )
        config.validate()
        backends = train.select_backends(
            _split(options.families), _split(options.backends)
        )
    except train.TrainError as error:
        raise CommandError(str(error)) from None
    results_folder = _writable_folder(options.results)

    with Progress(
        TextColumn("{task.description:<48}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("training with the reference", total=len(backends))

        def advance(key: str) -> None:
            progress.update(task, description=f"training with {key}")
            progress.advance(task)

        try:
            results = train.train_backends(backends, config, progress=advance)
        except train.TrainError as error:
            raise CommandError(str(error)) from None
        progress.update(task, description="done", completed=len(backends))

    document = results.to_dict()
    document["command"] = " ".join(["softgrad", *sys.argv[1:]])
    json_path, csv_path = train.write_results(document, results_folder)
    for table in _train_tables(document):
        console.print(table)
    for skipped in document.get("skipped", []):
        console.print(
            f"not trained: {skipped['family']}/{skipped['backend']}: "
            f"{skipped['reason']}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    pair = document["largest_pair_difference"]
    if pair:
        console.print(
            f"largest loss difference between two backends: {pair['value']:.2g} "
            f"(relative), {pair['backends'][0]} and {pair['backends'][1]}, "
            f"epoch {pair['epoch']}; tolerance {document['tolerance']:.2g}"
        )
    console.print(f"results: {json_path}, {csv_path}")
    try:
        results.raise_for_divergence()
    except train.DivergenceError as error:
        Console(stderr=True).print(f"softgrad: error: {error}", highlight=False)
        return 1
    return 0


def _train_tables(document: dict) -> list[Table]:
    """Build the per-backend tables, one per family so that they fit 80 columns."""
    from softgrad import train

    config = document["config"]
    # Backends that did not run are listed below the tables with their reasons.
    rows = [
        row
        for row in train.summary_rows(document)
        if not row["status"].startswith("skipped")
    ]
    # The compile time stays in train.json, train.csv and the report.
    hidden = ("family", "compile_s")
    columns = [(key, heading) for key, heading in train.COLUMNS if key not in hidden]
    if all(row["status"] == "ok" for row in rows):
        columns = [(key, heading) for key, heading in columns if key != "status"]
    tables = []
    for family in dict.fromkeys(row["family"] for row in rows):
        table = Table(
            title=f"{family}: training on digits, {config['epochs']} epochs, "
            f"{config['dtype']}",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        for key, heading in columns:
            justify = "left" if key in ("backend", "status") else "right"
            table.add_column(heading, justify=justify, no_wrap=key != "status")
        for row in rows:
            if row["family"] == family:
                cells = [train.format_cell(key, row[key]) for key, _ in columns]
                table.add_row(*cells, style=None if row["status"] == "ok" else "red")
        tables.append(table)
    return tables


def command_compare(options, console: Console) -> int:
    from softgrad import compare

    _require_files((options.old, options.new))
    if options.fail_above is not None and not options.fail_above >= 1:
        raise CommandError(
            f"`--fail-above` must be 1 or more, got {options.fail_above}"
        )
    min_change = options.min_change
    if min_change is None:
        min_change = compare.DEFAULT_MIN_CHANGE
    if not min_change >= 1:
        raise CommandError(f"`--min-change` must be 1 or more, got {min_change}")
    try:
        comparison, extra = compare.compare_files(
            options.old,
            options.new,
            min_change=min_change,
            relative=options.relative,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    if comparison.empty:
        raise CommandError(
            f"`{options.old}` and `{options.new}` have no timed case in common"
        )
    if options.output:
        compare.write_comparison(comparison, options.output)
    compare.print_comparison(comparison, extra, min_change, console)
    if options.fail_above is None:
        return 0
    if not options.min_time >= 0:
        raise CommandError(f"`--min-time` must be 0 or more, got {options.min_time}")
    failing = compare.regressions(comparison, options.fail_above, options.min_time)
    for row in failing.itertuples():
        # On stderr, so that --quiet still prints why the exit status is 1.
        print(
            f"softgrad: regression: {row.family}/{row.backend} {row.n}x{row.classes}"
            f" {row.dtype} is {row.ratio:.2f}x slower (95% interval"
            f" {row.ratio_low:.2f}x to {row.ratio_high:.2f}x), above"
            f" --fail-above {options.fail_above:g}",
            file=sys.stderr,
        )
    return 1 if len(failing) else 0


COMMANDS = {
    "run": command_run,
    "report": command_report,
    "compare": command_compare,
    "export": command_export,
    "publish": command_publish,
    "list": command_list,
    "train": command_train,
}


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    options.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if options.command == "run" and not options.keep_openblas_env and argv is None:
        _reexec_without_openblas_env()
    console = Console(file=sys.stdout, quiet=options.quiet)
    try:
        return COMMANDS[options.command](options, console)
    except CommandError as error:
        print(f"softgrad: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("softgrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
