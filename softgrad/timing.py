"""The pytest plugin behind `pytest --benchmark-only` and `softgrad run`.

It turns the command-line options into cases, prepares and checks each case
before pytest-benchmark times it, records skipped and failed cases with their
reasons, and stores them in the benchmark JSON beside the timings.
"""

from __future__ import annotations

import datetime
import logging
import sys

import numba
import pytest

import softgrad
from softgrad import cases as sweep_cases
from softgrad.grid import SMOKE_SIZE, parse_size
from softgrad.threads import set_threads, thread_counts

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ALL_VARIANTS = "all"  # the preset of --softgrad-variants for every variant


def add_options(parser) -> None:
    """Add softgrad's options to pytest."""
    group = parser.getgroup("softgrad", "softgrad sweep")
    group.addoption("--softgrad-grid", default="default", help="size grid: default, quick or large")
    group.addoption("--softgrad-families", default="", help="comma-separated families (default: all)")
    group.addoption("--softgrad-backends", default="", help="comma-separated backend names (default: all)")
    group.addoption("--softgrad-sizes", default="", help="comma-separated NxL sizes, replacing the grid")
    group.addoption("--softgrad-dtypes", default="", help="comma-separated dtypes (default: float64,float32)")
    group.addoption("--softgrad-memory-limit-gib", type=float, default=None, help="memory limit per call in GiB (default: a quarter of physical memory)")
    group.addoption("--softgrad-time-budget", type=float, default=sweep_cases.DEFAULT_TIME_BUDGET_S, help="predicted seconds per call past which a case is skipped")
    group.addoption(
        "--softgrad-variants",
        default="",
        help="comma-separated case variants, or `all` (default: default); see"
        " softgrad.cases.VARIANTS",
    )
    group.addoption(
        "--softgrad-resume",
        default="",
        help="raw results JSON of an earlier run: its timed cases are not run again",
    )
    group.addoption(
        "--softgrad-threads",
        type=int,
        default=None,
        help="threads for BLAS, numba, PyTorch and XLA (default: as they are)",
    )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_variants(text: str | None) -> list[str]:
    """Parse comma-separated variants; "all" means every one of cases.VARIANTS."""
    variants = _split(text or "")
    if ALL_VARIANTS in variants:
        return list(sweep_cases.VARIANTS)
    return sweep_cases.check_variants(variants)


def timing_requested(config) -> bool:
    """Return True when pytest-benchmark is asked to time, not only to smoke-test."""
    return bool(config.getoption("benchmark_only", False)) or bool(
        config.getoption("benchmark_json", None)
    )


class SweepPlugin:
    """Prepares each case, records skips and failures, and adds them to the JSON."""

    def __init__(self, config):
        self.config = config
        self.timing = timing_requested(config)
        limit = config.getoption("softgrad_memory_limit_gib")
        self.memory_limit = (
            sweep_cases.default_memory_limit() if limit is None else int(limit * 2**30)
        )
        self.time_budget = config.getoption("softgrad_time_budget")
        self.threads = config.getoption("softgrad_threads")
        if self.threads is not None:
            try:
                set_threads(self.threads)
            except ValueError as error:
                raise pytest.UsageError(f"--softgrad-threads: {error}") from None
        self.skipped: list[dict] = []
        self.failed: list[dict] = []
        self.mismatched: set[tuple[str, str, str]] = set()
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.already_timed = self._timed_in(config.getoption("softgrad_resume"))
        self.planned = 0  # cases collected
        self.completed: set[str] = set()  # node ids of the cases timed to the end
        self.interrupted = False

    @staticmethod
    def _timed_in(path: str) -> set[tuple]:
        """Return the (family, backend, n, classes, dtype) of each case `path` timed."""
        if not path:
            return set()
        from softgrad.summary import CASE_KEY, read_results  # summary imports this

        timed, _, _ = read_results(path)
        return {tuple(row[key] for key in CASE_KEY) for row in timed}

    def cases_for(self, family: str) -> list[sweep_cases.Case]:
        option = self.config.getoption
        families = _split(option("softgrad_families"))
        if families and family not in families:
            return []
        sizes = [parse_size(text) for text in _split(option("softgrad_sizes"))]
        if not self.timing and not sizes:
            sizes = [SMOKE_SIZE]
        planned = sweep_cases.plan(
            grid=option("softgrad_grid"),
            families=[family],
            backends=_split(option("softgrad_backends")),
            sizes=sizes,
            dtypes=_split(option("softgrad_dtypes")),
            variants=parse_variants(option("softgrad_variants")),
        )
        return [case for case in planned if case.key not in self.already_timed]

    def run(self, benchmark, case: sweep_cases.Case) -> None:
        """Prepare, check and time one case."""
        if (case.family, case.backend, case.variant) in self.mismatched:
            pytest.skip(f"{case.backend} gave a wrong answer at an earlier size")
        try:
            prepared = sweep_cases.prepare(case, self.memory_limit, self.time_budget)
        except sweep_cases.Skip as reason:
            pytest.skip(str(reason))
        except sweep_cases.MismatchError:
            self.mismatched.add((case.family, case.backend, case.variant))
            raise

        backend = prepared.backend
        benchmark.group = case.group
        benchmark.extra_info.update(
            family=case.family,
            backend=case.backend,
            n=case.size.n,
            classes=case.size.classes,
            dtype=case.dtype,
            variant=case.variant,
            baseline=backend.baseline,
            jacobian=backend.jacobian,
            device=backend.device,
            compile_s=prepared.compile_s,
            jit_compile_s=prepared.jit_compile_s,
            convert_s=prepared.convert_s,
            max_error=prepared.max_error,
            allocates_output=True,
            threads=numba.get_num_threads(),
        )
        function, arguments = prepared.timed_call()
        if prepared.predicted_s > sweep_cases.SLOW_CALL_S:
            # pytest-benchmark's calibration would spend many rounds on a
            # call this slow; a fixed few keep the default run short.
            benchmark.pedantic(
                function,
                args=arguments,
                rounds=sweep_cases.SLOW_ROUNDS,
                iterations=1,
            )
        else:
            benchmark(function, *arguments)

    def pytest_collection_finish(self, session):
        self.planned = sum(_case_of(item) is not None for item in session.items)

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = True

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        case = _case_of(item)
        if case is None:
            return
        if report.when == "call" and report.passed:
            self.completed.add(item.nodeid)
        entry = {
            "family": case.family,
            "backend": case.backend,
            "n": case.size.n,
            "classes": case.size.classes,
            "dtype": case.dtype,
            "variant": case.variant,
        }
        if report.skipped and not any(e == entry for e in self.skipped):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            self.skipped.append({**entry, "reason": reason.removeprefix("Skipped: ")})
        elif report.failed:
            message = str(call.excinfo.value) if call.excinfo else report.longreprtext
            self.failed.append({**entry, "reason": message})

    def section(self) -> dict:
        """Return the results file's `softgrad` section: the run and untimed cases."""
        return {
            "schema_version": SCHEMA_VERSION,
            "softgrad_version": softgrad.__version__,
            "started": self.started,
            "command": " ".join(sys.argv),
            "memory_limit": self.memory_limit,
            "time_budget_s": self.time_budget,
            "threads": {"requested": self.threads, **thread_counts()},
            "planned": self.planned,
            "interrupted": self.interrupted,
            "skipped": self.skipped,
            "failed": self.failed,
        }

    def pytest_benchmark_update_json(self, config, benchmarks, output_json):
        # A case stopped by Ctrl-C has the rounds timed so far: too few to keep.
        output_json["benchmarks"] = [
            entry
            for entry in output_json["benchmarks"]
            if entry.get("fullname") in self.completed
        ]
        output_json["softgrad"] = self.section()


def _case_of(item) -> sweep_cases.Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec else None
    return case if isinstance(case, sweep_cases.Case) else None
