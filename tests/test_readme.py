"""Tests that the README's commands are real: options exist and CI runs the test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from softgrad import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_lines() -> list[str]:
    """Return every command line of the README's bash blocks, comments removed."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                lines.append(line)
    return lines


def softgrad_commands() -> list[list[str]]:
    commands = []
    for line in code_lines():
        for part in line.split("&&"):
            words = shlex.split(part)
            if words and words[0] == "softgrad":
                commands.append(words[1:])
    return commands


def test_readme_starts_with_two_commands():
    """The first two bash blocks install and run the benchmark, then the tests."""
    first, second = code_lines()[:2]
    assert first.endswith("softgrad run")
    assert "pip install -e ." in first
    assert second.endswith("python -m pytest")
    assert 'pip install -e ".[test]"' in second


def test_ci_runs_readme_test_command():
    """`.ci/run` installs the test extra and runs the README's pytest command."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[test]"' in ci
    assert "\npython -m pytest\n" in ci


@pytest.mark.parametrize("arguments", softgrad_commands(), ids=" ".join)
def test_readme_softgrad_command_parses(arguments):
    """Each `softgrad` command in the README has valid options."""
    options = cli.build_parser().parse_args(arguments)
    if options.command == "run":
        cli._validate_run_options(options)
