"""Column checks and normalisation (Algorithm 1, step 1: normalised units everywhere).

Features are real-valued columns, standardised by their training mean and standard deviation.
Specifications are continuous (standardised), binary (0/1) or categorical (coded 0..K-1 in the
order of their sorted categories). The statistics live with the model and are saved with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

# MAX_CATEGORIES: integer or text columns with at most this many values are categorical under
# "auto"; identify's check of text cells in a column of numbers uses the same bound
from sedge_pyro.assumptions import MAX_CATEGORIES, refuse_stray_text
from sedge_pyro.errors import DataError
from sedge_pyro.table import missing_columns

__all__ = ["Column", "Columns", "as_frame", "infer_kind"]

KINDS = ("continuous", "binary", "categorical")


@dataclass
class Column:
    """One column's kind and normalisation.

    :param name: the node's name.
    :param kind: ``continuous``, ``binary`` or ``categorical``.
    :param mean: training mean (continuous), else 0.
    :param std: training standard deviation (continuous), else 1.
    :param categories: the sorted category labels (categorical).
    """

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    categories: list[Any] = field(default_factory=list)

    @property
    def width(self) -> int:
        """Width of the column as a context (one-hot for categorical)."""
        return len(self.categories) if self.kind == "categorical" else 1

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Raw values to normalised floats (categorical: codes).

        :raises DataError: naming the column and the first value it cannot hold (text in a
            continuous column, other than 0/1 in a binary one, a category never seen).
        """
        if self.kind == "continuous":
            return (_numbers(values, self.name, "continuous") - self.mean) / self.std
        if self.kind == "binary":
            _check_binary(pd.Series(np.asarray(values)), self.name)
            return np.asarray(values, dtype=float)
        lookup = {c: i for i, c in enumerate(self.categories)}
        codes = [lookup.get(v, -1) for v in np.asarray(values).tolist()]
        bad = [v for v, c in zip(np.asarray(values).tolist(), codes, strict=True) if c < 0]
        if bad:
            raise DataError(
                f"column {self.name!r} holds {len(bad)} value(s) never seen in training, e.g. "
                f"{bad[0]!r}: expected one of {self.categories}"
            )
        return np.asarray(codes, dtype=float)

    def decode(self, values: np.ndarray) -> np.ndarray:
        """Normalised floats back to raw values."""
        if self.kind == "continuous":
            return np.asarray(values, dtype=float) * self.std + self.mean
        if self.kind == "binary":
            return np.asarray(values).round().astype(int)
        codes = np.clip(np.asarray(values).round().astype(int), 0, len(self.categories) - 1)
        return np.asarray(self.categories, dtype=object)[codes]

    def encode_bound(self, bound: float | None) -> float | None:
        """An interval bound in normalised units."""
        if bound is None or self.kind != "continuous":
            return bound
        return (float(bound) - self.mean) / self.std


def as_frame(data: Any, what: str = "data") -> pd.DataFrame:
    """A DataFrame from a DataFrame or a dict of equal-length arrays.

    :raises DataError: for anything else, or arrays of unequal length.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        lengths = {k: len(np.asarray(v)) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{what} arrays have different lengths: {lengths}")
        return pd.DataFrame({k: np.asarray(v) for k, v in data.items()})
    raise DataError(
        f"{what} is {type(data).__name__}: expected a pandas DataFrame or a dict of arrays"
    )


def infer_kind(values: pd.Series) -> str:
    """The kind of a specification column under ``"auto"``.

    ``binary`` for 0/1 (or bool), ``categorical`` for few integers or any text, else
    ``continuous``.

    :raises DataError: for a column of numbers with a few text cells (see
        :func:`~sedge_pyro.assumptions.refuse_stray_text`), naming the column and a text cell.
    """
    refuse_stray_text(values, str(values.name))
    if pd.api.types.is_bool_dtype(values):
        return "binary"
    if pd.api.types.is_numeric_dtype(values):
        uniq = pd.unique(values)
        if set(np.asarray(uniq, dtype=float).tolist()) <= {0.0, 1.0}:
            return "binary"
        if pd.api.types.is_integer_dtype(values) and len(uniq) <= MAX_CATEGORIES:
            return "categorical"
        return "continuous"
    return "categorical"


class Columns:
    """The columns of a model, fit to training data and able to encode new data.

    :param columns: one :class:`Column` per node, features first.
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = {c.name: c for c in columns}

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        features: Sequence[str],
        specs: Sequence[str],
        kinds: Mapping[str, str],
    ) -> Columns:
        """Check the training frame and compute the statistics.

        :param df: training rows.
        :param features: feature names (standardised).
        :param specs: specification names.
        :param kinds: spec name -> ``continuous`` / ``binary`` / ``categorical`` / ``auto``.
        :raises DataError: a missing column, NaN or inf, a constant column, non-binary values
            in a binary spec, text in a continuous one; the message names the column and count.
        """
        check_columns(df, list(features) + list(specs))
        out = []
        for name in features:
            out.append(_continuous(df[name], name, "feature"))
        for name in specs:
            kind = kinds.get(name, "auto")
            if kind == "auto":
                kind = infer_kind(df[name])
            if kind == "continuous":
                out.append(_continuous(df[name], name, "specification"))
            elif kind == "binary":
                _check_binary(df[name], name)
                out.append(Column(name, "binary"))
            elif kind == "categorical":
                cats = sorted(pd.unique(df[name]).tolist(), key=lambda v: (str(type(v)), v))
                if len(cats) < 2:
                    raise DataError(
                        f"column {name!r} is constant ({cats[0]!r}): a categorical "
                        "specification needs two or more values"
                    )
                out.append(Column(name, "categorical", categories=cats))
            else:
                raise DataError(f"kind {kind!r} for {name!r}: expected one of {KINDS} or 'auto'")
        return cls(out)

    def tensor(
        self, df: pd.DataFrame, names: Sequence[str], *, one_hot: bool = False, device: Any = None
    ) -> torch.Tensor:
        """Normalised values of ``names`` as a float tensor of shape ``(rows, width)``."""
        parts = []
        for name in names:
            col = self.columns[name]
            values = col.encode(df[name].to_numpy())
            if one_hot and col.kind == "categorical":
                parts.append(np.eye(col.width)[values.astype(int)])
            else:
                parts.append(values[:, None])
        if not parts:
            return torch.zeros(len(df), 0, dtype=torch.get_default_dtype(), device=device)
        arr = np.concatenate(parts, axis=1)
        return torch.as_tensor(arr, dtype=torch.get_default_dtype(), device=device)

    def to_dict(self) -> dict[str, Any]:
        """A picklable copy (for saving)."""
        return {name: asdict(c) for name, c in self.columns.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Columns:
        """Inverse of :meth:`to_dict`."""
        return cls([Column(**c) for c in data.values()])


def check_columns(df: pd.DataFrame, names: Sequence[str], what: str = "data") -> None:
    """Every name is a column without NaN or inf.

    :param what: the argument's name in messages.
    :raises DataError: naming the first missing column, or the column and count of bad values.
    """
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise missing_columns(what, missing, list(df.columns))
    for name in names:
        values = df[name]
        nan = int(values.isna().sum())
        if nan:
            raise DataError(
                f"{what} column {name!r} holds {nan} NaN value(s): expected complete rows"
            )
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            inf = int(np.isinf(values.to_numpy(dtype=float)).sum())
            if inf:
                raise DataError(f"{what} column {name!r} holds {inf} infinite value(s)")


def _numbers(values: Any, name: str, role: str) -> np.ndarray:
    """A column's values as floats; text cells are a :class:`DataError` showing the first."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float)
    numbers = pd.to_numeric(series, errors="coerce")
    text = series[numbers.isna() & series.notna()]
    if len(text):
        raise DataError(
            f"column {name!r} holds {len(text)} non-numeric value(s), e.g. {text.iloc[0]!r}: "
            f"a {role} column must hold numbers"
        )
    return numbers.to_numpy(dtype=float)


def _check_binary(values: pd.Series, name: str) -> None:
    ok = values.isin([0, 1, True, False])
    if not ok.all():
        raise DataError(
            f"column {name!r} holds {int((~ok).sum())} value(s) other than 0/1 "
            f"(e.g. {values[~ok].iloc[0]!r}): a Bernoulli specification needs 0/1"
        )


def _continuous(values: pd.Series, name: str, role: str) -> Column:
    arr = _numbers(values, name, role)
    std = float(arr.std())
    if not std > 0:
        raise DataError(
            f"column {name!r} is constant ({arr[0]:g} in all {len(arr)} rows): it cannot be "
            "standardised"
        )
    return Column(name, "continuous", float(arr.mean()), std)
