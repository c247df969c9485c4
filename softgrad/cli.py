"""The `softgrad` command: run the sweep, rebuild reports, list the backends."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from rich import box
from rich.console import Console
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
        description="Measure every practical way to compute the softmax gradient "
        "and the fused softmax + cross-entropy gradient.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debugging details"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="check every backend, time the grid, write the summary and report",
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
        "report", help="rebuild summary and report from saved results, timing nothing"
    )
    report.add_argument("files", nargs="+", type=Path, help="raw results JSON files")
    report.add_argument(
        "--results",
        default="results",
        type=Path,
        help="folder for summary and report (default: %(default)s)",
    )

    commands.add_parser("list", help="list every backend and whether it runs here")
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
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            json.dump(data, handle, indent=1)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


class ProgressPlugin:
    """Shows a progress bar over the cases pytest runs, with the current case."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None

    def pytest_collection_finish(self, session):
        self.progress.start()
        self.task = self.progress.add_task("collecting", total=len(session.items))

    def pytest_runtest_logstart(self, nodeid, location):
        if self.task is not None:
            case = nodeid.split("[", 1)[-1].rstrip("]")
            family = nodeid.split("::")[-1].split("[")[0].removeprefix("test_")
            self.progress.update(self.task, description=f"{family} {case}"[:40])

    def pytest_runtest_logfinish(self, nodeid, location):
        if self.task is not None:
            self.progress.advance(self.task)

    def pytest_sessionfinish(self, session, exitstatus):
        if self.task is not None:
            self.progress.update(self.task, description="done")
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
        "-q",
        "--benchmark-only",
        f"--benchmark-json={raw_path}",
        f"--benchmark-max-time={0.02 if options.quick else options.max_time}",
        f"--benchmark-min-rounds={options.min_rounds}",
        f"--softgrad-threads={_thread_count(options)}",
        "--benchmark-disable-gc",
        f"--softgrad-grid={grid}",
        f"--softgrad-time-budget={_time_budget(options)}",
    ]
    for name in ("families", "backends", "sizes", "dtypes"):
        value = getattr(options, name)
        if value:
            arguments.append(f"--softgrad-{name}={value}")
    if options.memory_limit_gib is not None:
        arguments.append(f"--softgrad-memory-limit-gib={options.memory_limit_gib}")
    return arguments


def _validate_run_options(options) -> None:
    """Check every option before anything runs, so a typo costs no time."""
    from softgrad import cases
    from softgrad.grid import parse_size

    try:
        sizes = [parse_size(text) for text in _split(options.sizes)]
        planned = cases.plan(
            grid="quick" if options.quick else options.grid,
            families=_split(options.families),
            backends=_split(options.backends),
            sizes=sizes,
            dtypes=_split(options.dtypes),
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


def command_run(options, console: Console) -> int:
    import pytest

    from softgrad import machine

    if not BENCHMARK_DIR.is_dir():
        raise CommandError(
            f"`softgrad run` needs the benchmark modules of a source checkout, "
            f"not found at {BENCHMARK_DIR}; install with `pip install -e .` "
            f"from a clone of the repository"
        )
    _validate_run_options(options)
    results = _writable_folder(options.results)
    raw_folder = _writable_folder(results / "raw")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw_path = raw_folder / f"run-{stamp}-{os.getpid()}.json"
    partial_path = raw_folder / f".{raw_path.name}.partial"
    log_path = results / "pytest.log"

    from softgrad.threads import set_threads

    # Before the probe, so that it reports the thread counts the backends run with.
    set_threads(_thread_count(options))
    machine_info = machine.probe()
    if os.environ.get(REEXEC_MARK):
        machine_info["cleared_environment"] = os.environ[REEXEC_MARK]
    console.print(_machine_line(machine_info))

    plugin = ProgressPlugin(console)
    # pytest's own output goes to the log, so the terminal shows only the progress.
    with (
        open(log_path, "w") as log_file,
        contextlib.redirect_stdout(log_file),
        contextlib.redirect_stderr(log_file),
    ):
        exit_code = pytest.main(_pytest_arguments(options, partial_path), plugins=[plugin])

    if not partial_path.exists():
        raise CommandError(
            f"pytest-benchmark wrote no results (pytest exit status {int(exit_code)}); "
            f"see {log_path}"
        )
    data = json.loads(partial_path.read_text())
    data.setdefault("softgrad", {})["machine"] = machine_info
    data["softgrad"]["command"] = " ".join(["softgrad", *sys.argv[1:]])
    write_json_atomically(data, raw_path)
    partial_path.unlink()
    console.print(f"raw results: {raw_path}")

    status = _publish([raw_path], results, console)
    if int(exit_code) not in (0, 5):
        console.print(
            f"[red]pytest exit status {int(exit_code)}: some cases failed; "
            f"see {log_path}[/red]"
        )
        return 1
    return status


def _machine_line(info: dict) -> str:
    blas = info.get("blas") or "unknown BLAS"
    return (
        f"{info.get('cpu', 'unknown CPU')}, {info.get('logical_cores', '?')} cores, "
        f"{blas}"
    )


def _publish(paths: list[Path], results: Path, console: Console) -> int:
    """Build the summary, tables and report from raw files; return an exit status."""
    from softgrad import report, summary

    try:
        timings, skipped, runs = summary.load_results(paths)
    except ValueError as error:
        raise CommandError(str(error)) from None
    table = summary.summarize(timings)
    summary.write_summary(table, results)
    summary.print_table(table, console)
    report_path = results / "report.html"
    report.write_report(table, skipped, runs, report_path)
    if len(skipped):
        console.print(f"{len(skipped)} cases skipped; the report lists each reason")
    console.print(f"summary: {results / 'summary.md'}, {results / 'summary.csv'}")
    console.print(f"report: {report_path}")
    failed = skipped[skipped["status"] == "failed"] if "status" in skipped else []
    for row in getattr(failed, "itertuples", lambda: [])():
        console.print(f"[red]failed: {row.family}/{row.backend}: {row.reason}[/red]")
    return 1 if len(failed) else 0


def command_report(options, console: Console) -> int:
    for path in options.files:
        if not path.is_file():
            raise CommandError(f"results file `{path}` not found")
    results = _writable_folder(options.results)
    return _publish(list(options.files), results, console)


def command_list(options, console: Console) -> int:
    import impls

    for family in impls.FAMILIES:
        arguments = ", ".join(impls.ARGUMENTS[family])
        table = Table(title=f"{family}({arguments})", title_justify="left")
        table.add_column("backend", no_wrap=True)
        table.add_column("available")
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
    rows = train.summary_rows(document)
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


COMMANDS = {
    "run": command_run,
    "report": command_report,
    "list": command_list,
    "train": command_train,
}


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if options.command == "run" and not options.keep_openblas_env and argv is None:
        _reexec_without_openblas_env()
    console = Console(file=sys.stdout)
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
