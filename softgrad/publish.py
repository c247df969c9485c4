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

from softgrad import export, report, scaling, summary

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


def _training(results: Path) -> dict | None:
    """Return the folder's train.json from `softgrad train`, if it has a readable one."""
    from softgrad import train

    path = results / "train.json"
    if not path.is_file():
        return None
    try:
        return train.load_results(path)
    except train.TrainError as error:
        log.warning("left the training section out: %s", error)
        return None


def publish(paths: Sequence[Path], results: Path) -> Published:
    """Write the summary, scaling, tidy and report files of `paths` into `results`.

    The files are summary.csv, summary.md, scaling.csv, crossovers.csv,
    scaling.md, tidy.csv and report.html. Files from different machines stay
    apart (softgrad.summary.summarize_machines). Where files of one machine
    time the same case, the later one in `paths` wins. Raises
    ResultsFileError when a file cannot be read.
    """
    table, not_timed, runs = summary.summarize_machines(paths)
    summary_paths = summary.write_summary(table, results)
    scaling.write_scaling(table, results)
    export.write_tidy(export.tidy_table(paths), results / "tidy.csv")
    report_path = results / "report.html"
    report.write_report(table, not_timed, runs, report_path, _training(results))
    log.info("published %d raw files into %s", len(paths), os.fspath(results))
    return Published(table, not_timed, list(paths), summary_paths, report_path)
