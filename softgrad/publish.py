"""Summary tables and report of a results folder, rebuilt from its raw files.

Runs that share a results folder each write their own raw file, and each
rebuilds the summary from every raw file in the folder, under a lock, so the
last one to finish sees them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from softgrad import report, summary

log = logging.getLogger(__name__)

LOCK_NAME = ".publish.lock"


@dataclass
class Published:
    """The summary table, the untimed cases, the sources and the files written."""

    table: pd.DataFrame
    not_timed: pd.DataFrame
    sources: list[Path]
    summary_paths: tuple[Path, Path]
    report_path: Path


@contextlib.contextmanager
def lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder`'s publishing, waiting for other holders.

    NOTE: the lock is fcntl.flock, which serializes processes on one machine
    but not on every network file system. Without fcntl (Windows) it does
    nothing, so two runs that finish together may leave a summary without one
    of them. Their raw files are complete either way.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def raw_files(folder: Path) -> list[Path]:
    """List the raw results files of `folder`, oldest first by name."""
    return sorted(path for path in folder.glob("*.json") if path.is_file())


def readable_files(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Split `paths` into results files that load and one message per other file."""
    good, problems = [], []
    for path in paths:
        try:
            summary.read_results(path)
        except summary.ResultsFileError as error:
            problems.append(str(error))
        else:
            good.append(path)
    return good, problems


def publish(paths: Sequence[Path], results: Path) -> Published:
    """Write summary.csv, summary.md and report.html of `paths` into `results`.

    Where files time the same case, the later one in `paths` wins. Raises
    ResultsFileError when a file cannot be read.
    """
    timings, not_timed, runs = summary.load_results(paths)
    table = summary.summarize(timings)
    summary_paths = summary.write_summary(table, results)
    report_path = results / "report.html"
    report.write_report(table, not_timed, runs, report_path)
    log.info("published %d raw files into %s", len(paths), os.fspath(results))
    return Published(table, not_timed, list(paths), summary_paths, report_path)
