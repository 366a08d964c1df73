"""sp.Table: files read in record batches, global row numbers, the row hash, bad paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import sedge_pyro as sp
from sedge_pyro.table import Table, row_hash


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "z": rng.integers(0, 2, n)})


def test_parquet_row_groups_are_units_and_rows_keep_their_order(tmp_path):
    df = _frame(1000)
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "a.parquet", row_group_size=300)
    table = Table(tmp_path / "a.parquet")
    assert len(table) == 1000 and table.columns == ("x", "z")
    assert [u.rows for u in table.units] == [300, 300, 300, 100]
    batches = list(table.batches(batch_rows=128))
    back = pd.concat([b.frame for b in batches], ignore_index=True)
    pd.testing.assert_frame_equal(back, df)
    rows = np.concatenate([b.rows for b in batches])
    assert (rows == np.arange(1000)).all()
    # a batch's own rows are named by file and row within the file
    assert batches[3].where(2) == f"file {str(tmp_path / 'a.parquet')!r}, row {128 * 2 + 44 + 2}"


def test_folder_numbers_rows_file_after_file_in_path_order(tmp_path):
    a, b = _frame(50, 1), _frame(70, 2)
    b.to_csv(tmp_path / "part-2.csv", index=False)
    a.to_csv(tmp_path / "part-1.csv", index=False)
    table = Table(tmp_path)
    assert table.format == "csv" and len(table) == 120
    got = list(table.batches(order=[1, 0]))  # the second file first: numbers stay the file's
    assert got[0].rows[0] == 50 and got[0].first == 0 and got[0].file.endswith("part-2.csv")
    assert got[1].rows[0] == 0
    pd.testing.assert_frame_equal(table.head(3), a.head(3))


def test_a_pyarrow_dataset_is_accepted(tmp_path):
    _frame(40).to_parquet(tmp_path / "a.parquet")
    table = Table(ds.dataset(str(tmp_path / "a.parquet"), format="parquet"))
    assert len(table) == 40 and table.format == "parquet"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing.parquet", "does not exist"),
        (lambda p: (p / "a.txt").write_text("x\n1\n") and p / "a.txt", "expected .parquet"),
        (lambda p: (p / "sub").mkdir() or p / "sub", "holds no files"),
        (
            lambda p: (
                (
                    _frame(5).to_csv(p / "a.csv", index=False),
                    _frame(5).to_parquet(p / "b.parquet"),
                )
                and p
            ),
            "expected all Parquet",
        ),
        (lambda p: (p / "bad.parquet").write_bytes(b"not parquet") and p / "bad.parquet", "bad"),
    ],
)
def test_bad_paths_are_data_errors_naming_the_path(tmp_path, make, match):
    with pytest.raises(sp.DataError, match=match):
        len(Table(make(tmp_path)))


def test_other_objects_and_missing_columns_are_refused(tmp_path):
    with pytest.raises(sp.DataError, match="expected a DataFrame, a path"):
        Table(42)
    _frame(5).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(sp.DataError, match="no column 'y'"):
        Table(tmp_path / "a.parquet").require(["x", "y"])


def test_row_hash_is_uniform_and_depends_on_row_and_seed_only():
    rows = np.arange(200_000)
    h = row_hash(rows, 3)
    assert h.min() >= 0.0 and h.max() < 1.0
    assert abs((h < 0.1).mean() - 0.1) < 0.003
    assert abs(h.mean() - 0.5) < 0.003
    np.testing.assert_array_equal(row_hash(rows[5000:6000], 3), h[5000:6000])
    assert abs(np.corrcoef(h, row_hash(rows, 4))[0, 1]) < 0.01


def test_identify_on_a_file_has_exact_coverage_and_checks_a_sample(tmp_path, monkeypatch):
    import sys

    ident = sys.modules["sedge_pyro.identify"]  # the module, not sp.identify the function
    graph = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
    rng = np.random.default_rng(0)
    n = 5000
    df = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x1", "x2", "x3"])
    df["z1"] = rng.integers(0, 2, n)
    df["z2"] = np.where(df["z1"] == 1, 0, rng.integers(0, 2, n))
    df.loc[4321, ["z1", "z2"]] = 1  # the combination z1=1, z2=1 in one row of 5,000
    df.to_parquet(tmp_path / "rows.parquet", row_group_size=1000)
    monkeypatch.setattr(ident, "CHECK_ROWS", 100)
    target = {"z1": 1, "z2": 1}
    from_file = sp.identify(graph, target, tmp_path / "rows.parquet")
    from_frame = sp.identify(graph, target, df)
    assert from_file.status == from_frame.status == sp.Status.IDENTIFIABLE
    assert str(from_file.factorization) == str(from_frame.factorization)
    assert len(from_file.seen) == 100  # the checks' sample
    df.loc[4321, "z2"] = 0
    df.to_parquet(tmp_path / "rows.parquet", row_group_size=1000)
    assert sp.identify(graph, target, tmp_path / "rows.parquet").status == sp.Status.CONSERVATIVE
    with pytest.raises(sp.DataError, match="no column 'z3'"):
        sp.identify(sp.SpecGraph.from_parents({"z3": ["x1"]}), {"z3": 1}, tmp_path / "rows.parquet")
