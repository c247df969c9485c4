"""Resuming an interrupted sweep: what an earlier results file has timed, and merging.

A resumed run times only the cases its results file has not timed, then
writes one file with the earlier timings and its own, so no case is timed
twice and the earlier file stays as it was.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from softgrad.cases import DEFAULT_VARIANT, SoftgradError
from softgrad.summary import CASE_KEY, read_results

# Machine fields that must agree for timings of two runs to sit in one file.
SAME_MACHINE_FIELDS = ("cpu", "logical_cores")


@dataclass
class Previous:
    """An earlier run's results file, read for resuming."""

    path: Path
    data: dict  # the file's JSON
    timed: set[tuple]  # CASE_KEY of each timed case


def read_previous(path: str | Path) -> Previous:
    """Read the results file of the run to resume.

    Raises SoftgradError naming the file when it is missing, corrupt or not
    written by softgrad's sweep.
    """
    path = Path(path)
    try:
        timed, _, _ = read_results(path)
    except SoftgradError as error:
        raise SoftgradError(f"cannot resume: {error}") from None
    data = json.loads(path.read_text(encoding="utf-8"))
    return Previous(path, data, {tuple(row[key] for key in CASE_KEY) for row in timed})


def check_same_machine(previous: Previous, machine: dict) -> None:
    """Raise SoftgradError when `previous` was measured on another machine."""
    earlier = (previous.data.get("softgrad") or {}).get("machine") or {}
    for field in SAME_MACHINE_FIELDS:
        if field in earlier and earlier[field] != machine.get(field):
            raise SoftgradError(
                f"cannot resume from `{previous.path}`: it was measured with "
                f"{field} {earlier[field]!r}, this machine has {machine.get(field)!r};"
                " start a new run without --resume"
            )


def _entry_key(entry: dict) -> tuple:
    # Files written before variants existed hold default-variant cases only.
    return tuple(
        entry.get(key, DEFAULT_VARIANT if key == "variant" else None)
        for key in CASE_KEY
    )


def cases_in(data: dict) -> set[tuple]:
    """Return the CASE_KEY of every case a results file has timed, skipped or failed."""
    section = data.get("softgrad") or {}
    entries = [b.get("extra_info") or {} for b in data.get("benchmarks", [])]
    entries += section.get("skipped", []) + section.get("failed", [])
    return {_entry_key(entry) for entry in entries}


def merge(new: dict, previous: Previous, planned: Iterable[tuple]) -> dict:
    """Return `new` with the timings of `previous` added.

    Cases that `previous` skipped or failed keep their reasons when the new run
    did not plan them. The new run checked the planned ones again, so its
    outcome replaces theirs.
    """
    planned = set(planned)
    earlier = previous.data.get("softgrad") or {}
    merged = dict(new)
    merged["benchmarks"] = list(previous.data["benchmarks"]) + list(new["benchmarks"])
    section = dict(new["softgrad"])
    for status in ("skipped", "failed"):
        carried = [
            entry
            for entry in earlier.get(status, [])
            if _entry_key(entry) not in planned
            and _entry_key(entry) not in previous.timed
        ]
        section[status] = carried + list(section.get(status, []))
    section["resumed_from"] = list(earlier.get("resumed_from", [])) + [
        str(previous.path)
    ]
    merged["softgrad"] = section
    return merged


def command_without_resume(argv: Sequence[str]) -> list[str]:
    """Return `argv` without its --resume option and value."""
    kept, skip_next = [], False
    for argument in argv:
        if skip_next:
            skip_next = False
        elif argument == "--resume":
            skip_next = True
        elif not argument.startswith("--resume="):
            kept.append(argument)
    return kept


def resume_command(argv: Sequence[str], raw_path: Path) -> str:
    """Return the shell command that finishes the run of `argv` from `raw_path`."""
    arguments = ["softgrad", *command_without_resume(argv), "--resume", str(raw_path)]
    return shlex.join(arguments)
