"""A model's rows from files: one checking pass equal to the DataFrame path, bounded samples,
and shuffled shards that cover the training rows once per pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro.models.columns import Columns
from sedge_pyro.models.stream import StreamedRows, scan
from sedge_pyro.table import Table, row_hash


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(3.0, 2.0, n),
            "x2": rng.uniform(-1, 1, n),
            "zc": rng.normal(size=n),
            "zb": rng.integers(0, 2, n),
            "zk": rng.integers(0, 4, n),
            "zt": rng.choice(["red", "green", "blue"], n),
        }
    )


def _write(df: pd.DataFrame, path, group: int = 500) -> Table:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=group)
    return Table(path)


SPECS = ["zc", "zb", "zk", "zt"]


def test_scan_computes_the_columns_of_the_whole_frame(tmp_path):
    df = _rows(3000)
    found = scan(_write(df, tmp_path / "a.parquet"), ["x1", "x2"], SPECS, {}, progress=False)
    whole = Columns.fit(df, ["x1", "x2"], SPECS, {})
    for name in ["x1", "x2", *SPECS]:
        got, want = found.columns[name], whole[name]
        assert got.kind == want.kind, name
        assert got.mean == pytest.approx(want.mean, rel=1e-10, abs=1e-12)
        assert got.std == pytest.approx(want.std, rel=1e-10)
        assert got.categories == want.categories
    assert [found.columns[z].kind for z in SPECS] == [
        "continuous",
        "binary",
        "categorical",
        "categorical",
    ]


def test_held_out_rows_are_those_of_the_row_hash_and_samples_are_bounded(tmp_path):
    df = _rows(4000)
    table = _write(df, tmp_path / "a.parquet")
    found = scan(table, ["x1", "x2"], SPECS, {}, seed=5, keep=300, val_rows=10_000, progress=False)
    is_val = row_hash(np.arange(4000), 5) < 0.1
    assert found.rows == 4000 and found.train_rows == 4000 - is_val.sum()
    assert len(found.kept) == 300
    assert len(found.held_out) == is_val.sum()
    held = df.loc[is_val].sort_values("x1").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        found.held_out.sort_values("x1").reset_index(drop=True), held, check_dtype=False
    )
    # the kept rows are training rows
    assert not found.kept["x1"].isin(held["x1"]).any()


@pytest.mark.parametrize(
    "column, row, value, match",
    [
        ("x1", 1234, np.nan, "row 234: feature 'x1' holds nan"),
        ("x2", 1500, "abc", "row 500: feature 'x2' holds 'abc'"),
        ("zb", 1100, 7, "row 100: column 'zb' holds 7: a Bernoulli"),
        ("S", 1999, 0, "row 999: column 'S' is 0: fit on training rows"),
    ],
)
def test_a_bad_cell_names_its_file_and_row(tmp_path, column, row, value, match):
    df = _rows(2000)
    df["S"] = 1
    if column == "x2":
        df["x2"] = df["x2"].astype(object)
    df.loc[row, column] = value
    (tmp_path / "d").mkdir()
    df.iloc[:1000].to_csv(tmp_path / "d" / "p1.csv", index=False)
    df.iloc[1000:].to_csv(tmp_path / "d" / "p2.csv", index=False)
    with pytest.raises(sp.DataError, match=f"p2.csv', {match}"):
        scan(
            Table(tmp_path / "d"),
            ["x1", "x2"],
            SPECS,
            {"zb": "binary"},
            selection="S",
            progress=False,
        )


def test_constant_and_missing_columns_are_refused(tmp_path):
    df = _rows(100)
    df["x2"] = 1.5
    table = _write(df, tmp_path / "a.parquet")
    with pytest.raises(sp.DataError, match="'x2' is constant"):
        scan(table, ["x1", "x2"], SPECS, {}, progress=False)
    with pytest.raises(sp.DataError, match="no column 'x3'"):
        scan(table, ["x1", "x3"], SPECS, {}, progress=False)


def test_processes_share_the_training_rows_once_per_pass(tmp_path):
    df = _rows(3000)
    df["x1"] = np.arange(3000, dtype=float)  # a row's identity
    table = _write(df, tmp_path / "a.parquet", group=256)
    found = scan(table, ["x1", "x2"], SPECS, {}, progress=False)
    names = ["x1", "x2", *SPECS]
    seen = []
    for rank in (0, 1):
        rows = StreamedRows(
            table, found.columns, names, seed=0, val_fraction=0.1, rank=rank, world=2
        )
        one_pass = rows._rows(torch.Generator().manual_seed(rank))
        got = np.concatenate([next(one_pass) for _ in range(len(table.units))])
        ids = np.round(got[:, 0] * found.columns["x1"].std + found.columns["x1"].mean)
        assert (ids % 2 == rank).all()
        seen.append(ids)
    train = np.flatnonzero(row_hash(np.arange(3000), 0) >= 0.1)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), train)


def test_minibatches_are_full_mixed_and_encoded(tmp_path):
    df = _rows(2000).sort_values("zt").reset_index(drop=True)  # a sorted file
    table = _write(df, tmp_path / "a.parquet", group=200)
    found = scan(table, ["x1", "x2"], SPECS, {}, progress=False)
    rows = StreamedRows(
        table, found.columns, ["x1", "x2", *SPECS], seed=0, val_fraction=0.1, rows=found.train_rows
    )
    batches = rows.batches(64, torch.Generator().manual_seed(0))
    first = [next(batches) for _ in range(10)]
    assert all(b.shape == (64, 6) and b.dtype == np.float32 for b in first)
    codes = np.concatenate(first)[:, 5]
    assert set(np.unique(codes)) == {0.0, 1.0, 2.0}  # every label early, though sorted
    assert abs(np.concatenate(first)[:, 0].mean()) < 0.2  # standardised


def test_a_large_frame_keeps_a_bounded_uniform_sample():
    from sedge_pyro.models.stream import kept_rows

    df = pd.DataFrame({"i": np.arange(10_000)})
    small = kept_rows(df.iloc[:50], seed=0, keep=100)
    pd.testing.assert_frame_equal(small, df.iloc[:50])
    kept = kept_rows(df, seed=0, keep=1000)
    assert len(kept) == 1000 and kept["i"].is_unique
    assert abs(kept["i"].mean() - 5000) < 300  # uniform over the rows
    pd.testing.assert_frame_equal(kept, kept_rows(df, seed=0, keep=1000))
