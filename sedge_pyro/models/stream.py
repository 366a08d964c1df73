"""A model's rows from a :class:`~sedge_pyro.table.Table`: one checking pass, then shuffled
mini-batches, with memory that does not grow with the rows.

:func:`scan` reads the file once: it checks every cell (a bad one is named by file and row),
computes each column's kind and normalisation exactly as
:meth:`~sedge_pyro.models.columns.Columns.fit` does on a DataFrame (means and variances merged
batch by batch in float64, the categories of every spec), counts the rows, and keeps two
bounded samples chosen by :func:`~sedge_pyro.table.row_hash`: the held-out rows of early
stopping (at most :data:`VAL_ROWS` of the rows whose hash is below ``val_fraction``) and up to
:data:`KEEP_ROWS` training rows, which stand in for the training rows wherever the package
needs rows in memory (the samplers' :math:`p_D` terms, an empirical prior, the model file).

:class:`StreamedRows` then serves the training rows (hash at or above ``val_fraction``; with
several processes, the rows whose number modulo the world size is the rank) as encoded
mini-batches: units in a fresh random order each pass, rows mixed in a shuffle buffer of
:data:`BUFFER_ROWS` rows. A file sorted by a column is mixed only within that buffer and
within a Parquet row group; write such a file in several row groups, or shuffle it once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sedge_pyro.assumptions import MAX_CATEGORIES
from sedge_pyro.errors import DataError
from sedge_pyro.models.columns import KINDS, Column, Columns
from sedge_pyro.table import Batch, Table, row_hash

__all__ = [
    "BUFFER_ROWS",
    "KEEP_ROWS",
    "VAL_ROWS",
    "Scan",
    "StreamedRows",
    "keep_note",
    "kept_rows",
    "scan",
]

#: training rows kept in memory from a file (the model's ``seen`` rows)
KEEP_ROWS = 200_000
#: held-out rows a streamed fit evaluates early stopping on
VAL_ROWS = 50_000
#: rows mixed in the shuffle buffer of :class:`StreamedRows`
BUFFER_ROWS = 131_072
#: the most distinct values a categorical specification may take in a file
MAX_LABELS = 10_000
#: the hash seed of the kept sample is the fit's seed plus this (its split uses the seed)
_KEEP_SALT = 7919


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al. 1979)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    first: float | None = None

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        if self.first is None:
            self.first = float(values[0])
        n_b, mean_b = len(values), float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta**2 * self.n * n_b / n
        self.n = n

    def column(self, name: str) -> Column:
        std = float(np.sqrt(self.m2 / self.n)) if self.n else 0.0
        if not std > 0:
            raise DataError(
                f"column {name!r} is constant ({self.first:g} in all {self.n} rows): it cannot "
                "be standardised"
            )
        return Column(name, "continuous", self.mean, std)


@dataclass
class _Labels:
    """What a spec column's kind depends on: its type, whether it is 0/1, its values."""

    kind: str  # as asked: continuous / binary / categorical / auto
    moments: _Moments = field(default_factory=_Moments)
    values: set = field(default_factory=set)
    many: bool = False
    binary: bool = True
    integer: bool = True
    boolean: bool = True
    text: bool = False

    def add(self, series: pd.Series, batch: Batch, name: str) -> None:
        missing = series.isna().to_numpy()
        if missing.any():
            at = int(np.argmax(missing))
            raise DataError(f"{batch.where(at)}: column {name!r} is empty: expected a value")
        self.boolean &= pd.api.types.is_bool_dtype(series)
        numeric = pd.api.types.is_numeric_dtype(series) or self.boolean
        if not numeric:
            self.text = True
            self.binary = self.integer = False
        else:
            values = series.to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                at = int(np.argmax(bad))
                raise DataError(
                    f"{batch.where(at)}: column {name!r} holds {values[at]}: expected a number"
                )
            ok01 = (values == 0) | (values == 1)
            if self.kind == "binary" and not ok01.all():
                at = int(np.argmax(~ok01))
                raise DataError(
                    f"{batch.where(at)}: column {name!r} holds {_show(series.iloc[at])}: a "
                    "Bernoulli specification needs 0/1"
                )
            self.binary &= bool(ok01.all())
            self.integer &= pd.api.types.is_integer_dtype(series) or self.boolean
            self.moments.add(values)
        if not self.many:
            self.values.update(pd.unique(series).tolist())
            limit = MAX_LABELS if (self.text or self.kind == "categorical") else MAX_CATEGORIES
            if len(self.values) > limit:
                self.many = True
                if self.text or self.kind == "categorical":
                    raise DataError(
                        f"column {name!r} takes more than {MAX_LABELS:,} distinct values (by "
                        f"{batch.where(0)}): expected a categorical specification's labels"
                    )

    def column(self, name: str) -> Column:
        kind = self.kind
        if kind == "auto":
            if self.text:
                kind = "categorical"
            elif self.boolean or self.binary:
                kind = "binary"
            elif self.integer and not self.many:
                kind = "categorical"
            else:
                kind = "continuous"
        if kind == "continuous":
            if self.text:
                raise DataError(
                    f"column {name!r} holds text: a continuous specification needs numbers"
                )
            return self.moments.column(name)
        if kind == "binary":
            return Column(name, "binary")
        if kind == "categorical":
            cats = sorted(self.values, key=lambda v: (str(type(v)), v))
            if len(cats) < 2:
                raise DataError(
                    f"column {name!r} is constant ({cats[0]!r}): a categorical specification "
                    "needs two or more values"
                )
            return Column(name, "categorical", categories=cats)
        raise DataError(f"kind {kind!r} for {name!r}: expected one of {KINDS} or 'auto'")


@dataclass
class Scan:
    """What one pass over a table found.

    :param columns: the columns' kinds and normalisation.
    :param rows: the rows of the table.
    :param train_rows: the rows not held out.
    :param kept: up to :data:`KEEP_ROWS` training rows (raw values), a uniform sample.
    :param held_out: up to :data:`VAL_ROWS` held-out rows (raw values), a uniform sample.
    """

    columns: Columns
    rows: int
    train_rows: int
    kept: pd.DataFrame
    held_out: pd.DataFrame


class _Smallest:
    """The rows with the ``k`` smallest keys seen so far (bottom-k sampling)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.keys = np.empty(0)
        self.frame: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame, keys: np.ndarray) -> None:
        if not len(keys) or self.k == 0:
            return
        frame = frame.reset_index(drop=True)
        both = frame if self.frame is None else pd.concat([self.frame, frame], ignore_index=True)
        keys = np.concatenate([self.keys, keys])
        if len(keys) > self.k:
            keep = np.sort(np.argpartition(keys, self.k - 1)[: self.k])
            both, keys = both.iloc[keep].reset_index(drop=True), keys[keep]
        self.frame, self.keys = both, keys

    def result(self, columns: Sequence[str]) -> pd.DataFrame:
        if self.frame is None:
            return pd.DataFrame({c: [] for c in columns})
        return self.frame.iloc[np.argsort(self.keys, kind="stable")].reset_index(drop=True)


def scan(
    table: Table,
    features: Sequence[str],
    specs: Sequence[str],
    kinds: Mapping[str, str],
    *,
    selection: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    keep: int = KEEP_ROWS,
    val_rows: int = VAL_ROWS,
    progress: bool = True,
) -> Scan:
    """One pass over ``table``: checks, column statistics, row counts and the kept samples.

    :param kinds: spec -> ``continuous`` / ``binary`` / ``categorical`` / ``auto``.
    :param selection: the selection column; where the table has it, every row must hold 1.
    :param val_fraction: the share of rows held out (by :func:`~sedge_pyro.table.row_hash`
        with ``seed``); a table under 10 rows holds none out.
    :raises DataError: naming the file and row of a bad cell (text or NaN in a feature, an
        empty spec, a non-0/1 value of a Bernoulli spec, a row with S != 1), a missing column,
        or a constant column.
    """
    names = list(features) + list(specs)
    table.require(names)
    read = names + ([selection] if selection and selection in table.columns else [])
    total = len(table)
    vf = val_fraction if total >= 10 else 0.0
    feats = {name: _Moments() for name in features}
    labels = {name: _Labels(kinds.get(name, "auto")) for name in specs}
    kept, held = _Smallest(keep), _Smallest(val_rows)
    bar = tqdm(
        total=total,
        desc="read rows",
        unit="row",
        unit_scale=True,
        disable=not progress,
        leave=False,
    )
    n_val = 0
    for batch in table.batches(read):
        frame = batch.frame
        if selection in frame.columns:
            bad = (frame[selection] != 1).to_numpy()
            if bad.any():
                raise DataError(
                    f"{batch.where(int(np.argmax(bad)))}: column {selection!r} is "
                    f"{_show(frame[selection].iloc[int(np.argmax(bad))])}: fit on training rows "
                    "(S=1) only"
                )
            frame = frame.drop(columns=[selection])
        for name in features:
            feats[name].add(_finite(frame[name], batch, name))
        for name in specs:
            labels[name].add(frame[name], batch, name)
        is_val = row_hash(batch.rows, seed) < vf
        n_val += int(is_val.sum())
        keys = row_hash(batch.rows, seed + _KEEP_SALT)
        kept.add(frame.loc[~is_val], keys[~is_val])
        held.add(frame.loc[is_val], keys[is_val])
        bar.update(len(frame))
    bar.close()
    columns = [feats[f].column(f) for f in features] + [labels[z].column(z) for z in specs]
    return Scan(Columns(columns), total, total - n_val, kept.result(names), held.result(names))


def _show(value: Any) -> str:
    """A cell for a message: ``7``, ``'abc'``, ``nan`` (numpy scalars as Python's)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _finite(series: pd.Series, batch: Batch, name: str) -> np.ndarray:
    """A feature column of a batch as floats; the first text, missing or infinite cell is a
    :class:`DataError` naming its file and row.
    """
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=float)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        at = int(np.argmax(bad))
        raise DataError(
            f"{batch.where(at)}: feature {name!r} holds {_show(series.iloc[at])}: expected a "
            "finite number"
        )
    return values


class StreamedRows:
    """The training rows of a table, encoded (normalised features, spec codes), in shuffled
    mini-batches.

    :param table: the table.
    :param columns: the fitted columns (their order is the order of the encoded values).
    :param names: the columns to encode, in order.
    :param seed: the hash seed of the held-out split (as in :func:`scan`).
    :param val_fraction: the held-out share (rows with hash below it are never served).
    :param rank: this process's rank ...
    :param world: ... and the number of processes: a process serves the rows whose global row
        number modulo ``world`` is ``rank``.
    :param rows: the training rows of all processes (:attr:`Scan.train_rows`), so that a
        small table's buffer holds its rows once rather than ``buffer_rows`` of repeats.
    :param buffer_rows: rows mixed in the shuffle buffer.
    """

    def __init__(
        self,
        table: Table,
        columns: Columns,
        names: Sequence[str],
        *,
        seed: int,
        val_fraction: float,
        rank: int = 0,
        world: int = 1,
        rows: int | None = None,
        buffer_rows: int = BUFFER_ROWS,
    ) -> None:
        self.table, self.columns, self.names = table, columns, list(names)
        self.seed, self.rank, self.world = seed, rank, world
        self.val_fraction = val_fraction if len(table) >= 10 else 0.0
        self.buffer_rows = int(buffer_rows)
        if rows is not None:
            self.buffer_rows = min(self.buffer_rows, max(1, int(rows) // max(1, world)))

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows of raw values as a float32 array, a column per name (categories as codes)."""
        out = np.empty((len(frame), len(self.names)), dtype=np.float32)
        for j, name in enumerate(self.names):
            out[:, j] = self.columns[name].encode(frame[name].to_numpy())
        return out

    def _rows(self, generator: torch.Generator) -> Iterator[np.ndarray]:
        """This process's training rows, encoded, a record batch at a time, pass after pass
        (units in a fresh order each pass).
        """
        units = len(self.table.units)
        while True:
            order = torch.randperm(units, generator=generator).tolist()
            served = 0
            for batch in self.table.batches(self.names, order=order):
                mine = row_hash(batch.rows, self.seed) >= self.val_fraction
                if self.world > 1:
                    mine &= batch.rows % self.world == self.rank
                if mine.any():
                    served += int(mine.sum())
                    yield self.encode(batch.frame.loc[mine])
            if not served:
                raise DataError(
                    f"data {self.table.name!r} has no training rows for process {self.rank} of "
                    f"{self.world}: expected more rows than processes"
                )

    def batches(self, batch: int, generator: torch.Generator) -> Iterator[np.ndarray]:
        """Endless mini-batches of ``batch`` encoded rows.

        Record batches fill a buffer of ``buffer_rows`` rows; a full buffer is shuffled, its
        first half served as mini-batches and its second half kept, so a row leaves the buffer
        after a random wait.
        """
        buffer = np.empty((0, len(self.names)), dtype=np.float32)
        rows = self._rows(generator)
        capacity = max(self.buffer_rows, 2 * batch)
        while True:
            while len(buffer) < capacity:
                buffer = np.concatenate([buffer, next(rows)])
            buffer = buffer[torch.randperm(len(buffer), generator=generator).numpy()]
            cut = len(buffer) // 2 // batch * batch
            for start in range(0, cut, batch):
                yield buffer[start : start + batch]
            buffer = buffer[cut:]


def kept_rows(frame: pd.DataFrame, seed: int, keep: int = KEEP_ROWS) -> pd.DataFrame:
    """The rows of a DataFrame a model keeps as its ``seen`` rows: all of them up to
    ``keep``, else the ``keep`` rows with the smallest hashes, as :func:`scan` keeps a file's
    (so that the samplers' memory and the model file stay bounded).
    """
    if len(frame) <= keep:
        return frame.reset_index(drop=True)
    keys = row_hash(np.arange(len(frame)), seed + _KEEP_SALT)
    top = np.sort(np.argpartition(keys, keep - 1)[:keep])
    return frame.iloc[top].reset_index(drop=True)


def keep_note(scan: Scan) -> dict[str, Any]:
    """What a streamed fit kept, for the model's history."""
    return {
        "rows": scan.rows,
        "train_rows": scan.train_rows,
        "kept_rows": len(scan.kept),
        "held_out_rows": len(scan.held_out),
    }
