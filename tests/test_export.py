"""Tests of the tidy export: rows, units, hand-checked values, CSV and Parquet."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pandas as pd
import pytest

from softgrad import cli
from softgrad import export as ex

DATA = Path(__file__).parent / "data"
HAND = DATA / "hand.json"
REAL = DATA / "small_run.json"
KEY = ["run", "machine", "backend", "family", "n", "classes", "dtype", "statistic"]


def value(table, backend, n, classes, statistic):
    match = table[
        (table["backend"] == backend)
        & (table["n"] == n)
        & (table["classes"] == classes)
        & (table["statistic"] == statistic)
    ]
    assert len(match) == 1, f"expected one {statistic} of {backend} {n}x{classes}"
    return match.iloc[0]


@pytest.fixture(scope="module")
def hand_table():
    return ex.tidy_table([HAND])


def test_tidy_columns_in_order(hand_table):
    """The table has exactly TIDY_COLUMNS."""
    assert tuple(hand_table.columns) == ex.TIDY_COLUMNS


def test_tidy_one_row_per_key(hand_table):
    """No two rows share run, machine, backend, family, N, L, dtype and statistic."""
    assert not hand_table.duplicated(subset=KEY).any()


def test_tidy_median_from_file(hand_table):
    """numpy_vjp at 4 x 5 has the median hand.json gives: 10 us, in seconds."""
    row = value(hand_table, "numpy_vjp", 4, 5, "median")
    assert row["value"] == pytest.approx(10e-6)
    assert row["unit"] == "s"


def test_tidy_bandwidth_by_hand(hand_table):
    """softmax_backward at 4 x 5 float64 moves 3 x 160 bytes: 0.048 GB/s in 10 us."""
    row = value(hand_table, "numpy_vjp", 4, 5, "gb_per_s")
    assert row["value"] == pytest.approx(3 * 4 * 5 * 8 / 10e-6 / 1e9)
    assert row["unit"] == "GB/s"


def test_tidy_compile_only_when_measured(hand_table):
    """numba_serial has a compile time of 0.25 s; numpy_vjp has no compile row."""
    assert value(hand_table, "numba_serial", 4, 5, "compile")["value"] == 0.25
    compiles = hand_table[hand_table["statistic"] == "compile"]
    assert "numpy_vjp" not in set(compiles["backend"])


def test_tidy_schema_and_run(hand_table):
    """Every row has the schema version, the file's stem as run and its commit."""
    assert set(hand_table["schema_version"]) == {ex.EXPORT_SCHEMA_VERSION}
    assert set(hand_table["run"]) == {"hand"}
    assert set(hand_table["commit"]) == {"0123456789abcdef0123456789abcdef01234567"}


def test_tidy_keeps_runs_apart(tmp_path):
    """The same file under two names gives each row twice, once per run."""
    first = shutil.copy(HAND, tmp_path / "run-1.json")
    second = shutil.copy(HAND, tmp_path / "run-2.json")
    table = ex.tidy_table([first, second])
    assert len(table) == 2 * len(ex.tidy_table([HAND]))
    assert set(table["run"]) == {"run-1", "run-2"}


def test_csv_round_trip(tmp_path, hand_table):
    """The CSV reads back to the same values."""
    path = ex.write_tidy(hand_table, tmp_path / "tidy.csv")
    loaded = pd.read_csv(path, dtype={"commit": str})
    assert list(loaded.columns) == list(ex.TIDY_COLUMNS)
    assert loaded["value"].tolist() == pytest.approx(hand_table["value"].tolist())
    assert loaded["statistic"].tolist() == hand_table["statistic"].tolist()


def test_parquet_round_trip(tmp_path):
    """The Parquet file of a real run reads back equal, dtypes included."""
    pytest.importorskip("pyarrow", reason="pyarrow is not installed: the parquet extra")
    table = ex.tidy_table([REAL])
    path = ex.write_tidy(table, tmp_path / "tidy.parquet")
    loaded = pd.read_parquet(path)
    pd.testing.assert_frame_equal(loaded, table, check_dtype=False)
    assert loaded["n"].dtype == "int64"
    assert loaded["value"].dtype == "float64"


def test_parquet_without_pyarrow(tmp_path, monkeypatch, hand_table):
    """Without pyarrow, a Parquet export raises an error naming the package to install."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pyarrow" else real_find_spec(name, *args),
    )
    with pytest.raises(ex.ExportError, match=r"pip install 'softgrad\[parquet\]'"):
        ex.write_tidy(hand_table, tmp_path / "tidy.parquet")
    assert not (tmp_path / "tidy.parquet").exists()


def test_unknown_format(tmp_path, hand_table):
    """A .xlsx name is rejected, naming the format and the two accepted ones."""
    with pytest.raises(ex.ExportError, match="unknown export format `xlsx`"):
        ex.write_tidy(hand_table, tmp_path / "tidy.xlsx")


def test_cli_export_csv(tmp_path, capsys):
    """`softgrad export` writes the table and reports the row count."""
    target = tmp_path / "tidy.csv"
    assert cli.main(["export", str(HAND), "--output", str(target)]) == 0
    rows = len(target.read_text().splitlines()) - 1
    assert f"{rows} rows from 1 runs" in capsys.readouterr().out


def test_cli_export_bad_format(tmp_path, capsys):
    """A bad suffix is a one-line error with exit status 2 and no file."""
    target = tmp_path / "tidy.txt"
    assert cli.main(["export", str(HAND), "--output", str(target)]) == 2
    assert "unknown export format `txt`" in capsys.readouterr().err
    assert not target.exists()
