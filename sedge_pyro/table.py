"""Rows in files, read a record batch at a time: Parquet, CSV, or a folder of them.

A :class:`Table` is a thin view over a :mod:`pyarrow.dataset` so that a fit never holds more
than a few record batches of a file in memory, whatever its number of rows. It knows the
files, the schema, and how many rows each unit holds (a Parquet row group, a CSV file), so
that every row has a *global row number* (units in path order, rows in file order). The row
number is what the rest of the package keys on:

- :func:`row_hash` maps it to a uniform number in ``[0, 1)`` that does not depend on the
  order the rows are read in, the batch size or the number of processes, so the held-out rows
  of a fit (those with hash below ``val_fraction``), the kept sample of training rows (the
  smallest hashes) and the share of each process are the same however the file is read;
- an error about a cell names the file and its row (counting data rows from 0).

>>> import pandas as pd, tempfile, os
>>> folder = tempfile.mkdtemp()
>>> pd.DataFrame({"x": [0.5, 1.5, 2.5], "z": [0, 1, 1]}).to_csv(f"{folder}/a.csv", index=False)
>>> table = Table(folder)
>>> len(table), table.columns
(3, ('x', 'z'))
>>> [len(b.frame) for b in table.batches()]
[3]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError

__all__ = ["Batch", "Table", "is_table", "row_hash"]

#: file suffixes read as Parquet or CSV
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: rows per record batch read from a unit (a Parquet row group or a CSV file)
BATCH_ROWS = 65_536


def row_hash(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """A uniform number in ``[0, 1)`` per global row number, fixed by ``seed``.

    The SplitMix64 finaliser (Steele, Lea and Flood 2014) of the state ``(row + 1) * golden +
    seed``, its top 53 bits as a float: a row's value does not depend on which rows are read
    with it, so a split on it is the same in one process or many, from a DataFrame or a file.

    >>> row_hash(np.arange(3), seed=0).round(3).tolist()
    [0.883, 0.432, 0.026]
    """
    with np.errstate(over="ignore"):
        z = (np.asarray(rows, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(seed)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def missing_columns(what: str, missing: Sequence[str], have: Sequence[Any]) -> DataError:
    """The error for columns a frame or file lacks, naming the first and the ones it has."""
    return DataError(
        f"{what} has no column {missing[0]!r}"
        + (f" (nor {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
        + f": expected a column per graph node, got {', '.join(map(str, have))}"
    )


def is_table(data: Any) -> bool:
    """Whether ``data`` names rows in files: a path, a ``pyarrow.dataset`` or a :class:`Table`
    (a DataFrame, a dict of arrays, ``None`` are not).
    """
    if isinstance(data, (str, os.PathLike, Table)):
        return True
    return type(data).__module__.startswith("pyarrow")


@dataclass(frozen=True)
class Batch:
    """Rows of one record batch.

    :param frame: the rows, one column per requested column.
    :param file: the file they come from.
    :param first: the row number of the first of them in ``file`` (data rows from 0).
    :param rows: their global row numbers.
    """

    frame: pd.DataFrame
    file: str
    first: int
    rows: np.ndarray

    def where(self, position: int) -> str:
        """``"file 'a.parquet', row 17"`` for the ``position``-th row of the batch."""
        return f"file {self.file!r}, row {self.first + int(position)}"


@dataclass(frozen=True)
class _Unit:
    """A piece read as a whole: a Parquet row group, or a CSV file."""

    fragment: Any
    file: str
    first: int  # row number in the file of its first row
    start: int  # its first global row number
    rows: int


class Table:
    """Rows in Parquet or CSV files, read in record batches (:mod:`pyarrow.dataset`).

    :param source: a file, a folder of files (all Parquet or all CSV), a
        :class:`pyarrow.dataset.Dataset`, or a :class:`Table`.
    :param format: ``"parquet"`` or ``"csv"``; by default from the files' suffixes.
    :raises DataError: naming the path for a missing path, an empty folder, a suffix that is
        neither Parquet nor CSV, a folder mixing the two, or a file pyarrow cannot read.

    Opening a table reads the schema and the row counts only (Parquet footers; a CSV file is
    counted in one pass). Rows are read when :meth:`batches` is iterated.
    """

    def __init__(self, source: Any, *, format: str | None = None) -> None:
        import pyarrow.dataset as ds

        if isinstance(source, Table):
            self.dataset, self.format, self.name = source.dataset, source.format, source.name
        elif isinstance(source, ds.Dataset):
            self.dataset = source
            self.format = _format_of(source)
            self.name = type(source).__name__
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            self.format = _format(path, format)
            self.name = str(path)
            try:
                self.dataset = ds.dataset(str(path), format=self.format)
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise DataError(
                    f"data file {str(path)!r} cannot be read as {self.format}: {err}"
                ) from None
        else:
            raise DataError(
                f"data is {type(source).__name__}: expected a DataFrame, a path to a Parquet or "
                "CSV file or folder, a pyarrow.dataset.Dataset or a sedge_pyro.Table"
            )
        self._units: list[_Unit] | None = None

    def __repr__(self) -> str:
        return f"Table({self.name!r}, format={self.format!r}, columns={list(self.columns)})"

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names, in the schema's order."""
        return tuple(self.dataset.schema.names)

    @property
    def files(self) -> tuple[str, ...]:
        """The files, in the order their rows are numbered."""
        return tuple(sorted(self.dataset.files)) if hasattr(self.dataset, "files") else ()

    def __len__(self) -> int:
        return sum(u.rows for u in self.units)

    @property
    def units(self) -> list[_Unit]:
        """The pieces read as a whole (Parquet row groups, CSV files) with their row counts."""
        if self._units is None:
            self._units = _units(self.dataset, self.format)
            if not self._units:
                raise DataError(f"data {self.name!r} holds no rows: expected training rows")
        return self._units

    def require(self, names: Sequence[str], what: str = "data") -> None:
        """Every name is a column of the schema.

        :raises DataError: naming the first missing column and the columns there are.
        """
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise missing_columns(f"{what} {self.name!r}", missing, self.columns)

    def batches(
        self,
        columns: Sequence[str] | None = None,
        *,
        order: Sequence[int] | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> Iterator[Batch]:
        """The rows as :class:`Batch` es of at most ``batch_rows`` rows.

        :param columns: the columns to read (default: all).
        :param order: the units to read, by index into :attr:`units` (default: all, in order);
            a fit reads them in a fresh random order each pass.
        :raises DataError: naming the file for a unit pyarrow cannot read.
        """
        names = list(self.columns if columns is None else columns)
        self.require(names)
        units = self.units
        for k in range(len(units)) if order is None else order:
            unit = units[k]
            offset = 0
            try:
                for record in unit.fragment.to_batches(columns=names, batch_size=batch_rows):
                    n = record.num_rows
                    if n == 0:
                        continue
                    frame = record.to_pandas()
                    rows = np.arange(unit.start + offset, unit.start + offset + n, dtype=np.int64)
                    yield Batch(frame, unit.file, unit.first + offset, rows)
                    offset += n
            except (OSError, ValueError, TypeError) as err:
                raise DataError(f"file {unit.file!r} cannot be read: {err}") from None

    def read(
        self, whole: Sequence[str], sampled: Sequence[str], *, keep: int, seed: int = 0
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """In one pass: the columns ``whole`` of every row, and a uniform sample of ``keep``
        rows (the smallest :func:`row_hash` values) of the columns ``sampled``.

        :func:`~sedge_pyro.identify` reads a file this way: the target specs in full (which
        combinations are seen must be exact), every graph column of a sample for the
        assumption checks.
        """
        names = list(dict.fromkeys([*whole, *sampled]))
        parts: list[pd.DataFrame] = []
        sample: pd.DataFrame | None = None
        keys = np.empty(0)
        for batch in self.batches(names):
            parts.append(batch.frame[list(whole)])
            frame = (
                pd.concat([sample, batch.frame[list(sampled)]], ignore_index=True)
                if sample is not None
                else batch.frame[list(sampled)].reset_index(drop=True)
            )
            keys = np.concatenate([keys, row_hash(batch.rows, seed)])
            if len(keys) > keep:
                top = np.sort(np.argpartition(keys, keep - 1)[:keep])
                frame, keys = frame.iloc[top].reset_index(drop=True), keys[top]
            sample = frame
        assert sample is not None  # a table holds rows (see units)
        return pd.concat(parts, ignore_index=True), sample

    def head(self, n: int = 5, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The first ``n`` rows as a DataFrame."""
        parts, got = [], 0
        for batch in self.batches(columns, batch_rows=max(1, int(n))):
            parts.append(batch.frame)
            got += len(batch.frame)
            if got >= n:
                break
        return pd.concat(parts, ignore_index=True).iloc[:n]


def _format(path: Path, format: str | None) -> str:
    """The format of a file or folder: ``format``, else the suffixes of its files."""
    if format is not None:
        if format not in ("parquet", "csv"):
            raise DataError(f"format={format!r}: expected 'parquet' or 'csv'")
        return format
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    if path.is_dir():
        suffixes = {
            f.suffix.lower()
            for f in path.rglob("*")
            if f.is_file() and not f.name.startswith((".", "_"))
        }
        if not suffixes:
            raise DataError(f"data folder {str(path)!r} holds no files: expected Parquet or CSV")
        kinds = {FORMATS.get(s) for s in suffixes}
        if None in kinds or len(kinds) > 1:
            raise DataError(
                f"data folder {str(path)!r} holds files ending {', '.join(sorted(suffixes))}: "
                "expected all Parquet (.parquet, .pq) or all CSV (.csv)"
            )
        return kinds.pop()  # type: ignore[return-value]
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"data file {str(path)!r} ends {path.suffix!r}: expected .parquet, .pq or .csv "
            "(or pass format=)"
        )
    return kind


def _format_of(dataset: Any) -> str:
    """``"parquet"`` or ``"csv"`` for a pyarrow FileSystemDataset."""
    name = getattr(getattr(dataset, "format", None), "default_extname", None)
    if name in ("parquet", "csv"):
        return str(name)
    raise DataError(
        f"pyarrow dataset of format {getattr(dataset, 'format', None)!r}: expected Parquet or CSV"
    )


def _units(dataset: Any, format: str) -> list[_Unit]:
    """The units of ``dataset`` in path order, with global row offsets."""
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
    units: list[_Unit] = []
    start = 0
    for fragment in fragments:
        try:
            if format == "parquet":
                pieces = fragment.split_by_row_group()
                counts = [g.num_rows for piece in pieces for g in piece.row_groups]
            else:
                pieces = [fragment]
                counts = [fragment.count_rows()]
        except (OSError, ValueError) as err:
            raise DataError(f"file {fragment.path!r} cannot be read as {format}: {err}") from None
        first = 0
        for piece, rows in zip(pieces, counts, strict=True):
            if rows:
                units.append(_Unit(piece, fragment.path, first, start, rows))
            first += rows
            start += rows
    return units
