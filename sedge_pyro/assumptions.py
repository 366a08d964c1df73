"""Assumptions an identification rests on, each with a check on training rows.

The paper's assumptions (Sec. 3.2 and App. A.6), made concrete for a given target and
factorization:

- ``coverage`` (Assumption 1, Eq. 26): every target value is seen alone in the training rows;
- ``positivity``: every event a ``pD`` term conditions on has training rows;
- ``overlap`` (Assumption 2, Thm 2): the shared features ``X_c`` have a common value under every
  block's specification;
- ``rarity`` (Assumption 3, Thm 3): rows left out of training are rare; estimated by how often the
  blocks would co-occur if they were independent, which is what selection removed.

Target events on data: an :class:`~sedge_pyro.expr.Interval` matches the rows inside it; a
point target on a continuous column (float values that are not all whole numbers) matches rows
within a tolerance, default 0.1 standard deviations of the column; any other point matches by
equality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError
from sedge_pyro.expr import Factorization, Interval, Var
from sedge_pyro.graph import natural_key

__all__ = [
    "Assumption",
    "Check",
    "Coverage",
    "coverage_assumption",
    "is_continuous",
    "overlap_assumption",
    "positivity_assumption",
    "rarity_assumption",
    "refuse_stray_text",
]

#: A continuous point target matches training values within this many standard deviations.
DEFAULT_TOLERANCE_SD = 0.1
#: The rarity check flags blocks that would co-occur in more than this share of rows.
RARITY_THRESHOLD = 0.05
#: Columns of integers or text with at most this many distinct values are categories.
MAX_CATEGORIES = 50

Tolerance = float | Mapping[str, float] | None


def _names(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


def _set_text(names: Iterable[str]) -> str:
    return "{" + ", ".join(_names(names)) + "}"


class NovelPart(Protocol):
    """What the overlap and rarity checks need of a novel component."""

    shared: frozenset[str]
    blocks: tuple[frozenset[str], ...]
    specs: frozenset[str]


@dataclass(frozen=True)
class Check:
    """The result of checking an assumption on data.

    :param ok: ``True`` (holds), ``False`` (fails), or ``None`` (cannot be checked on S = 1
        rows alone).
    :param detail: what was measured, in a sentence a person reads.
    """

    ok: bool | None
    detail: str

    def __bool__(self) -> bool:
        return self.ok is True

    @property
    def label(self) -> str:
        """``ok``, ``FAIL`` or ``n/a``."""
        return {True: "ok", False: "FAIL", None: "n/a"}[self.ok]


@dataclass(frozen=True)
class Assumption:
    """An assumption the identification rests on, with a check on data.

    :param name: short name (``coverage``, ``positivity``, ``overlap``, ``rarity``).
    :param statement: the assumption in words, citing the paper.
    """

    name: str
    statement: str
    _checker: Callable[[pd.DataFrame], Check] = field(repr=False, compare=False)

    def check(self, data: pd.DataFrame) -> Check:
        """Evaluate the assumption on training rows (S = 1).

        :param data: a frame with the columns the assumption needs.
        :returns: a :class:`Check`.
        :raises DataError: when ``data`` lacks a needed column or holds NaNs.
        """
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data is {type(data).__name__}: expected a pandas DataFrame")
        return self._checker(data)


def is_continuous(column: pd.Series) -> bool:
    """Whether a column holds continuous values: floats that are not all whole numbers."""
    if not pd.api.types.is_float_dtype(column):
        return False
    values = column.to_numpy(dtype=float)
    return not np.all(np.equal(np.mod(values, 1.0), 0.0))


def refuse_stray_text(column: pd.Series, name: str) -> None:
    """Refuse a column of numbers holding a few text cells (a typo, a stray header, ``"n/a"``).

    Read as text, such a column would become one category per value. A column is refused when
    most of its cells are numbers, some are not, and it has more than
    :data:`MAX_CATEGORIES` distinct values; text labels (all or most cells text, or few
    distinct values) pass. :func:`~sedge_pyro.identify` and a model's ``"auto"`` kinds decide
    the same way.

    :param column: the column (NaN cells are not looked at).
    :param name: the column's name in the message.
    :raises DataError: naming the column, the count of text cells and the first one.

    >>> refuse_stray_text(pd.Series(["red", "blue"] * 30), "colour")
    >>> refuse_stray_text(pd.Series([f"{i / 10}" for i in range(99)] + ["abc"]), "z1")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sedge_pyro.errors.DataError: column 'z1' holds 1 text value(s) among 99 numbers, e.g. 'abc': ...
    """
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return
    values = column.dropna()
    text = values[pd.to_numeric(values, errors="coerce").isna()]
    if text.empty or 2 * len(text) >= len(values) or values.nunique() <= MAX_CATEGORIES:
        return
    raise DataError(
        f"column {name!r} holds {len(text)} text value(s) among {len(values) - len(text)} "
        f"numbers, e.g. {text.iloc[0]!r}: expected a number in every row (fix or drop those "
        "rows)"
    )


class Coverage:
    """Counts training rows satisfying target events, alone and in combinations."""

    def __init__(
        self,
        data: pd.DataFrame,
        target: Mapping[str, Any],
        tolerance: Tolerance,
    ) -> None:
        self.n = len(data)
        self.masks: dict[str, np.ndarray] = {}
        for name, value in target.items():
            col = data[name]
            if isinstance(value, Interval):
                if not pd.api.types.is_numeric_dtype(col):
                    raise DataError(
                        f"column {name!r} is not numeric: an Interval target needs numbers"
                    )
                mask = value.contains(col.to_numpy(dtype=float))
            elif isinstance(value, int | float) and is_continuous(col):
                tol = _tolerance(name, col, tolerance)
                mask = np.abs(col.to_numpy(dtype=float) - float(value)) <= tol
            else:
                mask = col.to_numpy() == value
            self.masks[name] = np.asarray(mask, dtype=bool)

    def mask(self, names: Iterable[str]) -> np.ndarray:
        """Rows satisfying every target event of ``names``."""
        out = np.ones(self.n, dtype=bool)
        for name in names:
            out &= self.masks[name]
        return out

    def count(self, names: Iterable[str]) -> int:
        """Number of rows satisfying every target event of ``names``."""
        return int(self.mask(names).sum())


def _tolerance(name: str, col: pd.Series, tolerance: Tolerance) -> float:
    if isinstance(tolerance, Mapping):
        if name in tolerance:
            return float(tolerance[name])
        tolerance = None
    if tolerance is None:
        return DEFAULT_TOLERANCE_SD * float(col.std(ddof=0))
    return float(tolerance)


def coverage_assumption(target: Mapping[str, Any], tolerance: Tolerance) -> Assumption:
    """Assumption 1 (Eq. 26): every target value is seen alone in the training rows."""
    events = ", ".join(f"P({Var(k, v).to_text()} | S=1) > 0" for k, v in target.items())

    def check(data: pd.DataFrame) -> Check:
        _require(data, target)
        cov = Coverage(data, target, tolerance)
        counts = {k: cov.count([k]) for k in target}
        missing = [k for k, c in counts.items() if c == 0]
        detail = ", ".join(f"{Var(k, target[k]).to_text()}: {c} rows" for k, c in counts.items())
        if missing:
            detail += "; never seen: " + ", ".join(Var(k, target[k]).to_text() for k in missing)
        return Check(not missing, detail)

    return Assumption(
        "coverage",
        f"each target value is seen alone in the training rows: {events} (Assumption 1, Eq. 26)",
        check,
    )


def positivity_assumption(
    factorization: Factorization,
    target: Mapping[str, Any],
    tolerance: Tolerance,
) -> Assumption:
    """Every event a ``pD`` term of ``factorization`` conditions on has training rows."""
    conditioned = []
    for t in factorization.terms:
        names = [v.name for v in t.rhs if not v.is_free]
        if names and names not in conditioned:
            conditioned.append(names)

    def check(data: pd.DataFrame) -> Check:
        _require(data, target)
        cov = Coverage(data, target, tolerance)
        parts, ok = [], True
        for names in conditioned:
            count = cov.count(names)
            ok &= count > 0
            parts.append(f"{', '.join(Var(n, target[n]).to_text() for n in names)}: {count} rows")
        return Check(ok, "; ".join(parts) if parts else "no term conditions on an event")

    return Assumption(
        "positivity",
        "every event a pD term conditions on has positive probability in the training rows",
        check,
    )


def overlap_assumption(
    comps: Sequence[NovelPart],
    target: Mapping[str, Any],
    tolerance: Tolerance,
) -> Assumption:
    """Assumption 2 (Thm 2): the blocks of each novel part overlap in their shared features.

    Discrete ``X_c``: some value occurs under every block. Continuous ``X_c``: the blocks'
    ranges intersect, and each block has rows in the intersection.
    """

    def check(data: pd.DataFrame) -> Check:
        _require(data, target)
        cov = Coverage(data, target, tolerance)
        parts, ok = [], True
        for comp in comps:
            cols = _names(comp.shared)
            missing = [c for c in cols if c not in data.columns]
            if missing:
                raise DataError(f"data has no column {missing[0]!r} for shared feature X_c")
            good, text = _overlap(data, cols, [cov.mask(b) for b in comp.blocks], comp.blocks)
            ok &= good
            parts.append(text)
        return Check(ok, "; ".join(parts))

    shared = set().union(*(c.shared for c in comps)) if comps else set()
    return Assumption(
        "overlap",
        f"the shared features X_c = {_set_text(shared)} take a common value with positive "
        "density under every block's specification, pD(X_c = x̃_c | Z_Br = z_Br) > 0 "
        "(Assumption 2, Thm 2)",
        check,
    )


def _overlap(
    data: pd.DataFrame, cols: list[str], masks: list[np.ndarray], blocks: Iterable[frozenset]
) -> tuple[bool, str]:
    names = ["{" + ", ".join(_names(b)) + "}" for b in blocks]
    frames = [data.loc[m, cols] for m in masks]
    if any(len(f) == 0 for f in frames):
        return False, f"X_c {_set_text(cols)}: a block has no training rows"
    continuous = [c for c in cols if is_continuous(data[c])]
    discrete = [c for c in cols if c not in continuous]
    common_keys = None
    if discrete:
        keysets = [set(map(tuple, f[discrete].to_numpy().tolist())) for f in frames]
        common_keys = set.intersection(*keysets)
        if not common_keys:
            return (
                False,
                f"X_c {_set_text(cols)}: no value of {_set_text(discrete)} is shared by all blocks",
            )
    if continuous:
        lows = np.max([f[continuous].min().to_numpy(dtype=float) for f in frames], axis=0)
        highs = np.min([f[continuous].max().to_numpy(dtype=float) for f in frames], axis=0)
        if np.any(lows > highs):
            return (
                False,
                f"X_c {_set_text(cols)}: the blocks' ranges of {_set_text(continuous)} "
                "do not overlap",
            )
    counts = []
    for f in frames:
        inside = np.ones(len(f), dtype=bool)
        if continuous:
            vals = f[continuous].to_numpy(dtype=float)
            inside &= np.all((vals >= lows) & (vals <= highs), axis=1)
        if discrete:
            inside &= np.array([tuple(r) in common_keys for r in f[discrete].to_numpy().tolist()])
        counts.append(int(inside.sum()))
    ok = all(c > 0 for c in counts)
    detail = ", ".join(f"{n}: {c} rows in the overlap" for n, c in zip(names, counts, strict=True))
    return ok, f"X_c {_set_text(cols)}: {detail}"


def rarity_assumption(
    comps: Sequence[NovelPart],
    target: Mapping[str, Any],
    tolerance: Tolerance,
) -> Assumption:
    """Assumption 3 (Thm 3): rows left out of training are rare.

    The training rows cannot show ``P(S = 0)``; what they show is how often the blocks of a
    novel combination would co-occur if they were independent (the product of their
    frequencies). Selection removed at least about that share of the population, so the check
    fails above 5%.
    """

    def check(data: pd.DataFrame) -> Check:
        _require(data, target)
        if not comps:
            return Check(
                None,
                "approximate terms come from specifications outside the target that feed S; "
                "P(S=0) cannot be estimated from the training rows alone",
            )
        cov = Coverage(data, target, tolerance)
        parts, ok = [], True
        for comp in comps:
            freqs = [cov.count(b) / cov.n for b in comp.blocks]
            expected = float(np.prod(freqs))
            observed = cov.count(comp.specs) / cov.n
            ok &= expected <= RARITY_THRESHOLD
            names = " & ".join(_set_text(b) for b in comp.blocks)
            parts.append(
                f"blocks {names} co-occur in {observed:.2%} of training rows; independent "
                f"blocks would co-occur in {expected:.2%}"
            )
        verdict = (
            "" if ok else f" (above {RARITY_THRESHOLD:.0%}: the rarity assumption is doubtful)"
        )
        return Check(ok, "; ".join(parts) + verdict)

    return Assumption(
        "rarity",
        "rows left out of training are rare, P(S=0 | Z_i = z_i) ≈ 0 and P(S=0) ≈ 0, so pD "
        "terms marked ≈ equal their population counterparts (Assumption 3, Thm 3)",
        check,
    )


def _require(data: pd.DataFrame, target: Mapping[str, Any]) -> None:
    for name in target:
        if name not in data.columns:
            raise DataError(f"data has no column {name!r} for target specification {name!r}")
        if data[name].isna().any():
            raise DataError(f"column {name!r} holds NaN values: expected complete rows")
    if len(data) == 0:
        raise DataError("data has no rows: expected training rows (S=1)")
