"""Publishing a results folder: its raw files, unreadable ones, and the lock."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from softgrad import publish

DATA = Path(__file__).parent / "data"


def test_raw_files_oldest_first(tmp_path):
    """Raw files are listed by name, which starts with the run's start time."""
    for name in ("run-20261204-120000-9.json", "run-20261203-080000-1.json"):
        shutil.copy(DATA / "hand.json", tmp_path / name)
    (tmp_path / "run-20261204-120000-9.log").write_text("")

    names = [path.name for path in publish.raw_files(tmp_path)]

    assert names == ["run-20261203-080000-1.json", "run-20261204-120000-9.json"]


def test_readable_files_sets_bad_file_aside(tmp_path):
    """A corrupt file is left out with a message naming it; good files stay."""
    good = shutil.copy(DATA / "hand.json", tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": [')

    readable, problems = publish.readable_files([Path(good), bad])

    assert readable == [Path(good)]
    assert len(problems) == 1
    assert f"`{bad}`" in problems[0]


def test_publish_writes_summary_and_report(tmp_path):
    """publish writes summary.csv, summary.md and report.html of its files."""
    published = publish.publish([DATA / "hand.json"], tmp_path)

    assert published.report_path.stat().st_size > 0
    for path in published.summary_paths:
        assert path.stat().st_size > 0


def test_lock_waits_for_holder(tmp_path):
    """A second holder of the publishing lock waits until the first lets go."""
    events = []

    def second_holder():
        with publish.lock(tmp_path):
            events.append("second")

    with publish.lock(tmp_path):
        thread = threading.Thread(target=second_holder)
        thread.start()
        time.sleep(0.2)
        events.append("first done")
    thread.join(timeout=10)

    assert events == ["first done", "second"]


def test_publish_includes_training_section(tmp_path):
    """A folder with a train.json gets the training section in its report."""
    from softgrad import train

    config = train.TrainConfig(epochs=1)
    backends = train.select_backends(names=["fused_numpy"])
    results = train.train_backends(backends, config)
    train.write_results(results.to_dict(), tmp_path)
    raw = Path(__file__).parent / "data" / "small_run.json"

    published = publish.publish([raw], tmp_path)

    page = published.report_path.read_text()
    assert page.count('id="training"') == 1
    assert 'href="#training"' in page
    assert "fused_numpy" in page.split('id="training"')[1]
